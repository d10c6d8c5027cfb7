import Foundation

/// Runs one of the package's executables as a user would: environment, stdin, exit code,
/// stdout and stderr captured.
public struct ProcessResult: Sendable {
    public let exitCode: Int32
    public let stdout: String
    public let stderr: String

    public var json: [String: Any]? {
        (try? JSONSerialization.jsonObject(with: Data(stdout.utf8))) as? [String: Any]
    }
    /// The `body` of an API Gateway proxy response printed on stdout.
    public var body: String { json?["body"] as? String ?? "" }
    public var bodyJSON: [String: Any]? {
        (try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: Any]
    }
    public var statusCode: Int? { json?["statusCode"] as? Int }
}

public enum Executables {
    /// The folder holding the built products: the test bundle sits beside them.
    public static var binPath: URL {
        let me = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        return URL(fileURLWithPath: me).deletingLastPathComponent()
    }

    public static func url(_ name: String) -> URL { binPath.appendingPathComponent(name) }

    /// The package's root folder.
    public static var packageRoot: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }

    public static func event(_ name: String) -> [UInt8] {
        (try? Array(Data(contentsOf: packageRoot.appendingPathComponent("events/\(name)")))) ?? []
    }

    /// Runs `name` with exactly `environment` (plus PATH), `stdin` as its input, waits for it.
    /// The waiting happens on a thread of its own, never on Swift's cooperative pool (two
    /// threads here), so loopback stand-ins served by the test process keep answering.
    public static func run(
        _ name: String, environment: [String: String], stdin: [UInt8] = [], arguments: [String] = [],
        timeout: TimeInterval = 60
    ) async throws -> ProcessResult {
        try await withCheckedThrowingContinuation { continuation in
            let thread = Thread {
                continuation.resume(with: Result {
                    try runBlocking(name, environment: environment, stdin: stdin, arguments: arguments, timeout: timeout)
                })
            }
            thread.start()
        }
    }

    /// Runs blocking work on a thread of its own and awaits its result.
    public static func offPool<T: Sendable>(_ work: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { continuation in
            Thread { continuation.resume(returning: work()) }.start()
        }
    }

    /// Waits for a process to end without blocking the cooperative pool.
    public static func wait(_ process: Process) async {
        let box = UncheckedBox(process)
        await offPool { box.value.waitUntilExit() }
    }

    static func runBlocking(
        _ name: String, environment: [String: String], stdin: [UInt8], arguments: [String], timeout: TimeInterval
    ) throws -> ProcessResult {
        let process = Process()
        process.executableURL = url(name)
        process.arguments = arguments
        var env = environment
        env["PATH"] = env["PATH"] ?? "/usr/bin:/bin"
        process.environment = env
        let input = Pipe(), output = Pipe(), errors = Pipe()
        process.standardInput = input
        process.standardOutput = output
        process.standardError = errors
        try process.run()
        let writer = Thread {
            // A child may exit before reading its stdin (a configuration error): EPIPE is expected
            // then, and the legacy write(_:) would trap on it.
            try? input.fileHandleForWriting.write(contentsOf: Data(stdin))
            try? input.fileHandleForWriting.close()
        }
        writer.start()
        // Read both pipes on threads of their own, so a chatty stderr cannot block the child and
        // a child that hangs cannot block the test: the timeout below applies whatever it does.
        let outData = LockedData(), errorData = LockedData()
        Thread { outData.set(output.fileHandleForReading.readDataToEndOfFile()) }.start()
        Thread { errorData.set(errors.fileHandleForReading.readDataToEndOfFile()) }.start()
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning, Date() < deadline { usleep(1000) }
        var timedOut = false
        if process.isRunning {
            timedOut = true
            process.terminate()
            let grace = Date().addingTimeInterval(2)
            while process.isRunning, Date() < grace { usleep(1000) }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        }
        process.waitUntilExit()
        while outData.get() == nil || errorData.get() == nil { usleep(1000) }
        let stderr = String(decoding: errorData.get() ?? Data(), as: UTF8.self)
        return ProcessResult(
            exitCode: process.terminationStatus,
            stdout: String(decoding: outData.get() ?? Data(), as: UTF8.self),
            stderr: timedOut ? stderr + "\n[\(name) was still running after \(Int(timeout)) s and was stopped]\n" : stderr)
    }

    /// Starts `name` in the background (for the Lambda loop); the caller terminates it.
    /// Its stderr goes to a temporary file, returned for reading once it has stopped.
    public static func start(_ name: String, environment: [String: String], arguments: [String] = []) throws -> (Process, URL) {
        let process = Process()
        process.executableURL = url(name)
        process.arguments = arguments
        var env = environment
        env["PATH"] = env["PATH"] ?? "/usr/bin:/bin"
        process.environment = env
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("stderr-\(UUID().uuidString).log")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = FileHandle.nullDevice
        process.standardError = try FileHandle(forWritingTo: log)
        try process.run()
        return (process, log)
    }
}

final class LockedData: @unchecked Sendable {
    private let lock = NSLock()
    private var data: Data?
    func set(_ value: Data) { lock.lock(); data = value; lock.unlock() }
    func get() -> Data? { lock.lock(); defer { lock.unlock() }; return data }
}

/// Carries a non-Sendable reference to another thread that alone uses it.
struct UncheckedBox<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}

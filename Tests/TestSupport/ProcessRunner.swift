import Foundation

/// Runs one of the package's executables as a user would: environment, stdin, exit code,
/// stdout and stderr captured.
public struct ProcessResult: Sendable {
    public let exitCode: Int32
    public let stdout: String
    public let stderr: String
    /// A signal ended the process (then `exitCode` is the signal's number).
    public var signalled = false
    /// It ran past its timeout and was stopped.
    public var timedOut = false

    public init(exitCode: Int32, stdout: String, stderr: String, signalled: Bool = false, timedOut: Bool = false) {
        self.exitCode = exitCode
        self.stdout = stdout
        self.stderr = stderr
        self.signalled = signalled
        self.timedOut = timedOut
    }

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
        try await offPool {
            try ChildProcess.run(url(name).path, arguments: arguments, environment: withPath(environment), stdin: stdin, timeout: timeout)
        }
    }

    /// Runs blocking work on a thread of its own and awaits its result (or its error).
    public static func offPool<T: Sendable, E: Error>(_ work: @escaping @Sendable () throws(E) -> T) async throws(E) -> T {
        let result: Result<T, E> = await withCheckedContinuation { continuation in
            Thread { continuation.resume(returning: Result { () throws(E) -> T in try work() }) }.start()
        }
        return try result.get()
    }

    /// Waits for a process to end without blocking the cooperative pool; one still running
    /// after `timeout` seconds is stopped (SIGTERM, then SIGKILL), so a test never waits forever.
    public static func wait(_ process: ChildProcess, timeout: TimeInterval = 60) async {
        await offPool {
            if !process.waitUntilExit(timeout: timeout) { process.stop() }
        }
    }

    /// `environment` with a PATH, as a shell would give a child, and the test run's own clock:
    /// when scripts/test runs the suite a year ahead (Tests/support/clock_ahead.c), a child lives
    /// in the same year as the test that reads its records.
    private static func withPath(_ environment: [String: String]) -> [String: String] {
        var environment = environment
        if environment["PATH"] == nil { environment["PATH"] = "/usr/bin:/bin" }
        for (name, value) in ProcessInfo.processInfo.environment where name == "LD_PRELOAD" || name == "CLOCK_AHEAD_SECONDS" {
            if environment[name] == nil { environment[name] = value }
        }
        return environment
    }

    /// Starts `name` in local mode in the background with `stdin` as its event (for tests that
    /// kill it midway); its output goes nowhere. The caller stops it.
    public static func start(_ name: String, environment: [String: String], stdin: [UInt8]) throws -> ChildProcess {
        let child = try ChildProcess(url(name).path, environment: withPath(environment), stdin: .pipe)
        var written = 0
        while written < stdin.count {
            let count = stdin[written...].withUnsafeBytes { write(child.stdinWriter, $0.baseAddress, $0.count) }
            if count < 0, errno == EINTR { continue }
            guard count > 0 else { break }
            written += count
        }
        child.closeStdin()
        return child
    }

    /// Starts `name` in the background (for the Lambda loop and the local gateway); the caller
    /// stops it. Its stderr goes to a temporary file, returned for reading.
    public static func start(_ name: String, environment: [String: String], arguments: [String] = []) throws -> (ChildProcess, URL) {
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("stderr-\(UUID().uuidString).log")
        let child = try ChildProcess(url(name).path, arguments: arguments, environment: withPath(environment), stderr: .file(log))
        return (child, log)
    }
}

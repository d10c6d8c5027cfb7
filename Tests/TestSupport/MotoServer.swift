import AWSSigning
import Foundation

/// moto_server on loopback with signature checking on, started once per test process by
/// `Tests/support/moto_harness.py` and stopped when the test process ends (its stdin closes).
public actor MotoServer {
    public struct Connection: Sendable {
        public let endpoint: String
        public let region: String
        public let credentials: AWSCredentials

        /// The environment a function needs to use this server.
        public var environment: [String: String] {
            [
                "AWS_REGION": region, "AWS_ACCESS_KEY_ID": credentials.accessKeyID,
                "AWS_SECRET_ACCESS_KEY": credentials.secretAccessKey,
                "AWS_SESSION_TOKEN": credentials.sessionToken ?? "",
            ]
        }
    }

    public static let shared = MotoServer()
    /// One start for every caller: the actor is re-entered while the first start awaits.
    private var starting: Task<Connection, any Error>?
    /// The harness runs until the test process ends: the write end of its stdin is held here
    /// (close-on-exec, so no other child holds it), and its end of file stops moto.
    private var harness: ChildProcess?

    public func start() async throws -> Connection {
        if let starting { return try await starting.value }
        let task = Task { try await self.launch() }
        starting = task
        return try await task.value
    }

    private func launch() async throws -> Connection {
        let errorLog = FileManager.default.temporaryDirectory.appendingPathComponent("moto-harness-\(UUID().uuidString).log")
        // moto's request recorder (the bench's traced run) writes to `moto_recording` in the
        // working folder unless told otherwise: a temporary file, never the repository.
        let recording = FileManager.default.temporaryDirectory.appendingPathComponent("moto-recording-\(UUID().uuidString).jsonl").path
        // The whole environment: a run a year ahead (scripts/test) moves moto's clock too.
        let environment = ProcessInfo.processInfo.environment.merging(["MOTO_RECORDER_FILEPATH": recording]) { $1 }
        let harness = try ChildProcess(
            "/usr/bin/env", arguments: ["python3", Executables.packageRoot.appendingPathComponent("Tests/support/moto_harness.py").path],
            environment: environment, stdin: .pipe,
            stdout: .pipe, stderr: .file(errorLog))
        self.harness = harness
        // The first line is the connection document; read it off the cooperative pool, and give
        // up after two minutes (a first start of moto on a slow machine takes a few seconds).
        let line = await Executables.offPool { Self.readLine(harness.stdoutReader, timeout: 120) }
        guard let object = (try? JSONSerialization.jsonObject(with: Data(line))) as? [String: String],
            let endpoint = object["endpoint"], let key = object["accessKeyId"],
            let secret = object["secretAccessKey"], let token = object["sessionToken"]
        else {
            let stderr = (try? String(contentsOf: errorLog, encoding: .utf8)) ?? ""
            throw MotoError(
                message:
                    "moto_harness.py did not start (is moto[server] installed? scripts/test installs it): \(String(decoding: line, as: UTF8.self)) \(stderr.suffix(2000))"
            )
        }
        let connection = Connection(
            endpoint: endpoint, region: object["region"] ?? "eu-west-1",
            credentials: AWSCredentials(accessKeyID: key, secretAccessKey: secret, sessionToken: token))
        return connection
    }
}

extension MotoServer {
    /// One line from `fd`, without its newline; what came before end of file or the timeout.
    static func readLine(_ fd: Int32, timeout: TimeInterval) -> [UInt8] {
        let deadline = Date().addingTimeInterval(timeout)
        var line: [UInt8] = []
        var byte: UInt8 = 0
        while Date() < deadline {
            var ready = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&ready, 1, 100) > 0 else { continue }
            guard read(fd, &byte, 1) == 1, byte != 0x0A else { break }
            line.append(byte)
        }
        return line
    }
}

public struct MotoError: Error, CustomStringConvertible {
    public let message: String
    public var description: String { message }
}

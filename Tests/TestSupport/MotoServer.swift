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
    private var process: Process?
    private var stdin: Pipe?

    public func start() async throws -> Connection {
        if let starting { return try await starting.value }
        let task = Task { try await self.launch() }
        starting = task
        return try await task.value
    }

    private func launch() async throws -> Connection {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", Executables.packageRoot.appendingPathComponent("Tests/support/moto_harness.py").path]
        let input = Pipe(), output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        let errorLog = FileManager.default.temporaryDirectory.appendingPathComponent("moto-harness-\(UUID().uuidString).log")
        _ = FileManager.default.createFile(atPath: errorLog.path, contents: nil)
        process.standardError = try FileHandle(forWritingTo: errorLog)
        try process.run()
        // The first line is the connection document; read it off the cooperative pool.
        let handle = output.fileHandleForReading
        let line = await Executables.offPool {
            var line = Data()
            while true {
                let byte = handle.readData(ofLength: 1)
                if byte.isEmpty || byte == Data([0x0A]) { break }
                line.append(byte)
            }
            return line
        }
        guard let object = (try? JSONSerialization.jsonObject(with: line)) as? [String: String],
              let endpoint = object["endpoint"], let key = object["accessKeyId"],
              let secret = object["secretAccessKey"], let token = object["sessionToken"]
        else {
            let stderr = (try? String(contentsOf: errorLog, encoding: .utf8)) ?? ""
            throw MotoError(message: "moto_harness.py did not start (is moto[server] installed? scripts/test installs it): \(String(decoding: line, as: UTF8.self)) \(stderr.suffix(2000))")
        }
        let connection = Connection(
            endpoint: endpoint, region: object["region"] ?? "eu-west-1",
            credentials: AWSCredentials(accessKeyID: key, secretAccessKey: secret, sessionToken: token))
        self.process = process
        self.stdin = input
        return connection
    }
}

public struct MotoError: Error, CustomStringConvertible {
    public let message: String
    public var description: String { message }
}

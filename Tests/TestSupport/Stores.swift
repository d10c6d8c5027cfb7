import Foundation
import KeyValueStore
import NIOHTTPTransport

/// The two store backends, for suites that run against both.
public enum StoreBackend: String, CaseIterable, Sendable {
    case file, dynamodb
}

public enum Stores {
    public static func temporaryDirectory() -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("kv-\(UUID().uuidString)").path
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// A unique suffix so parallel tests never share a DynamoDB table.
    public static func unique(_ name: String) -> String { "\(name)-\(UUID().uuidString.prefix(8).lowercased())" }

    /// A store of `backend` with `tables` created (fresh and empty).
    public static func make(_ backend: StoreBackend, tables: [TableSchema]) async throws -> any KeyValueStore {
        switch backend {
        case .file:
            return try FileStore(directory: temporaryDirectory(), tables: tables)
        case .dynamodb:
            let moto = try await MotoServer.shared.start()
            let store = DynamoDBStore(
                transport: NIOHTTPTransport(), region: moto.region, endpoint: moto.endpoint, credentials: moto.credentials)
            for table in tables { try await store.createTable(table) }
            return store
        }
    }
}

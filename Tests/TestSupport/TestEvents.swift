import Foundation

public enum TestEvents {
    /// A sample event from `events/`.
    public static func load(_ name: String) -> [UInt8] { Executables.event(name) }

    public static func text(_ name: String) -> String { String(decoding: load(name), as: UTF8.self) }

    /// A REST (payload 1.0) GET event with the given query.
    public static func restGET(path: String, query: [String: String]) -> [UInt8] {
        let object: [String: Any] = [
            "httpMethod": "GET", "path": path, "headers": ["Host": "example.test"],
            "queryStringParameters": query, "isBase64Encoded": false,
        ]
        return Array((try? JSONSerialization.data(withJSONObject: object)) ?? Data())
    }
}

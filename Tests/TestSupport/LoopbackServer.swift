import Essentials
import Foundation
import LocalHTTPServer

/// A small HTTP server on 127.0.0.1 with an async handler: the base of every loopback
/// stand-in the tests talk to (Lambda Runtime API, Graph API, agent, Bedrock). It is the
/// product's own `HTTPServer` (the local gateway's), on an ephemeral port.
public final class LoopbackServer: Sendable {
    public typealias Request = HTTPServer.Request
    public typealias Response = HTTPServer.Response
    public typealias Handler = HTTPServer.Handler

    private let server: HTTPServer
    public var port: Int { server.port }
    public var baseURL: String { "http://127.0.0.1:\(port)" }
    /// How many TCP connections the server has accepted so far.
    public var acceptedConnections: Int { server.acceptedConnections }

    public init(handler: @escaping Handler) async throws {
        server = try await HTTPServer(host: "127.0.0.1", port: 0, maxBodyBytes: 64 * 1024 * 1024, handler: handler)
    }

    /// Stops at once: a stand-in's long-polls (the Runtime API's `next`) never finish by themselves.
    public func shutdown() async { await server.shutdown(grace: .zero) }
}

extension HTTPServer.Request {
    /// The query's parameters (form-decoded: `+` is a space), the last of a repeated name.
    public var query: [String: String] {
        var result: [String: String] = [:]
        for pair in queryString.split(separator: "&") {
            let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            result[FormEncoding.decode(kv[0], plusIsSpace: true)] = kv.count > 1 ? FormEncoding.decode(kv[1], plusIsSpace: true) : ""
        }
        return result
    }
    public var bodyText: String { String(decoding: body, as: UTF8.self) }
    public var jsonBody: [String: Any]? {
        (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any]
    }
}

extension HTTPServer.Response {
    public static func json(_ status: Int, _ text: String) -> HTTPServer.Response {
        HTTPServer.Response(status: status, headers: [("Content-Type", "application/json")], body: Array(text.utf8))
    }
}

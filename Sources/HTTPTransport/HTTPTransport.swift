@_exported import Essentials

/// The outbound HTTP port: the Graph API, DynamoDB, SQS, the agents. The core depends on
/// this protocol only; the executables that call out plug in the SwiftNIO adapter (NIOHTTPTransport), and
/// `verify` and `auth-url` link no HTTP client at all.
public protocol HTTPTransport: Sendable {
    /// Sends one request and returns the whole response, whatever its status. Throws
    /// `TransportError` when no response arrived (connection refused, timeout, TLS failure).
    func send(_ request: OutboundRequest, timeout: Duration) async throws(TransportError) -> OutboundResponse
}

public struct OutboundRequest: Sendable {
    public var method: String
    public var url: String
    public var headers: [(String, String)]
    public var body: [UInt8]
    /// Which addresses the request may reach, checked against the address actually connected
    /// to (so a name that resolves elsewhere between a check and the call changes nothing);
    /// nil: any. A transport refuses, sending nothing, a connection the rule forbids.
    public var peers: PeerRule?

    public init(method: String, url: String, headers: [(String, String)] = [], body: [UInt8] = [], peers: PeerRule? = nil) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
        self.peers = peers
    }
}

public struct OutboundResponse: Sendable {
    public var status: Int
    public var headers: [(String, String)]
    public var body: [UInt8]

    public init(status: Int, headers: [(String, String)] = [], body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    public func header(_ name: String) -> String? {
        headers.first { HeaderName.equal($0.0, name) }?.1
    }
}

/// No response arrived. The message names the host, never a URL's query (it may hold a token).
public struct TransportError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable { case timeout, connection, tooLarge, other }
    public let kind: Kind
    public let message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }
}

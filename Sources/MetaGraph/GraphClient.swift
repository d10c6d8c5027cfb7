import Essentials
import HTTPTransport
import MetaWebhooks

/// A Graph API failure, kept whole as Meta reports it (Graph API "Handling Errors":
/// `{"error": {"message", "type", "code", "error_subcode", "is_transient", "fbtrace_id"}}`).
/// Never carries a token: messages come from Meta's error object or name the host only.
public struct GraphError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: String, Sendable, Equatable {
        /// Meta answered with an error object.
        case graph
        /// No answer: connection failure or timeout.
        case transport
        /// An answer that is not the Graph API's.
        case invalidResponse
    }

    public let kind: Kind
    public let httpStatus: Int?
    public let code: Int?
    public let subcode: Int?
    public let type: String?
    public let message: String
    public let fbtraceId: String?
    public let isTransientFlag: Bool
    /// For transport failures: whether the request surely never reached Meta.
    public let notSent: Bool
    /// What the answer's headers said about the rate limits, when it carried them.
    public var usage: GraphUsage?

    public init(
        kind: Kind, httpStatus: Int? = nil, code: Int? = nil, subcode: Int? = nil, type: String? = nil,
        message: String, fbtraceId: String? = nil, isTransient: Bool = false, notSent: Bool = false
    ) {
        self.kind = kind
        self.httpStatus = httpStatus
        self.code = code
        self.subcode = subcode
        self.type = type
        self.message = message
        self.fbtraceId = fbtraceId
        self.isTransientFlag = isTransient
        self.notSent = notSent
    }

    /// Codes Meta documents as temporary: 1 (unknown), 2 (service), the rate limits
    /// (`isThrottled`); plus HTTP 5xx and `is_transient`. A timeout is not retried: the
    /// message may have been sent.
    public var isTransient: Bool {
        switch kind {
        case .graph:
            return isTransientFlag || (httpStatus ?? 0) >= 500 || [1, 2].contains(code ?? 0) || isThrottled
        case .transport:
            return notSent
        case .invalidResponse:
            return (httpStatus ?? 0) >= 500
        }
    }

    /// Code 190: the access token expired or was revoked; the business must reconnect.
    public var isExpiredToken: Bool { code == 190 }

    public var description: String {
        var parts = ["Graph API error"]
        if let code { parts.append("code \(code)") }
        if let subcode { parts.append("subcode \(subcode)") }
        if let httpStatus { parts.append("HTTP \(httpStatus)") }
        var text = parts.joined(separator: " ") + ": \(message)"
        if let fbtraceId { text += " (fbtrace_id \(fbtraceId))" }
        return text
    }
}

/// The Graph API over the `HTTPTransport` port. Every call that carries a token sends it
/// in the `Authorization` header (never in a URL that could be logged) together with
/// `appsecret_proof` (HMAC-SHA256 of the token keyed by the app secret).
public struct GraphClient: Sendable {
    public let baseURL: String
    public let version: String
    private let appSecret: String
    private let transport: any HTTPTransport
    /// Whether calls carry `appsecret_proof` (Facebook's Graph API; the Instagram API with
    /// Instagram Login on `graph.instagram.com` documents none).
    public let sendsAppSecretProof: Bool

    public init(
        transport: any HTTPTransport, baseURL: String = "https://graph.facebook.com", version: String = "v25.0", appSecret: String,
        sendsAppSecretProof: Bool = true
    ) {
        self.transport = transport
        self.baseURL = baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL
        self.version = version
        self.appSecret = appSecret
        self.sendsAppSecretProof = sendsAppSecretProof
    }

    /// The scheme and host (and port) of `baseURL`.
    var origin: String { Self.origin(of: baseURL) }

    static func origin(of url: String) -> String {
        guard let schemeEnd = url.firstRange(of: "://") else { return "" }
        let rest = url[schemeEnd.upperBound...]
        let authority = rest.prefix { $0 != "/" && $0 != "?" && $0 != "#" }
        return String(url[..<schemeEnd.upperBound]) + authority
    }

    /// `appsecret_proof` for a token.
    public func proof(for token: String) -> String {
        HMACSHA256.hex(Array(token.utf8), key: appSecret)
    }

    /// One Graph call. `path` is relative to the version (`me/accounts`, `123/messages`) or
    /// an absolute URL from the Graph API itself (a `paging.next` link).
    public func call(
        _ method: String, _ path: String, query: [(String, String)] = [], token: String?,
        json: [UInt8]? = nil, timeout: Duration
    ) async throws(GraphError) -> JSON {
        try await callReportingUsage(method, path, query: query, token: token, json: json, timeout: timeout).answer
    }

    /// `call`, with what the answer's headers said about the rate limits (an error carries
    /// it in `GraphError.usage`).
    public func callReportingUsage(
        _ method: String, _ path: String, query: [(String, String)] = [], token: String?,
        json: [UInt8]? = nil, timeout: Duration
    ) async throws(GraphError) -> (answer: JSON, usage: GraphUsage?) {
        var query = query
        var headers: [(String, String)] = [("Accept", "application/json")]
        if let token {
            if sendsAppSecretProof { query.append(("appsecret_proof", proof(for: token))) }
            headers.append(("Authorization", "Bearer \(token)"))
        }
        var url: String
        if path.hasPrefix("http://") || path.hasPrefix("https://") {
            // A link from an answer (`paging.next`) is followed only to the Graph API we are
            // configured for: the token must never go to another host.
            guard path.hasPrefix(origin + "/") else {
                throw GraphError(
                    kind: .invalidResponse, message: "the Graph API answered a link to another host (\(Self.origin(of: path))); it was not followed")
            }
            url = path
        } else {
            url = "\(baseURL)/\(version)/\(path)"
        }
        if !query.isEmpty {
            url = Self.replacing(query.map(\.0), in: url)
            url += (url.contains("?") ? "&" : "?") + FormEncoding.query(query)
        }
        if json != nil { headers.append(("Content-Type", "application/json")) }
        let response: OutboundResponse
        do {
            response = try await transport.send(OutboundRequest(method: method, url: url, headers: headers, body: json ?? []), timeout: timeout)
        } catch {
            throw GraphError(kind: .transport, message: error.message, notSent: error.kind == .connection)
        }
        let usage = GraphUsage.from(response.header)
        let document = try? JSON.parse(response.body)
        if let error = document?["error"], error.object != nil {
            var graphError = GraphError(
                kind: .graph, httpStatus: response.status, code: error["code"]?.int64.flatMap { Int(exactly: $0) },
                subcode: error["error_subcode"]?.int64.flatMap { Int(exactly: $0) }, type: error["type"]?.string,
                message: error["message"]?.string ?? "no message", fbtraceId: error["fbtrace_id"]?.string,
                isTransient: error["is_transient"]?.bool ?? false)
            graphError.usage = usage
            throw graphError
        }
        guard (200..<300).contains(response.status), let document else {
            var graphError = GraphError(
                kind: .invalidResponse, httpStatus: response.status,
                message: "the Graph API answered HTTP \(response.status) without a Graph response")
            graphError.usage = usage
            throw graphError
        }
        return (document, usage)
    }

    /// Drops parameters we are about to set from a URL's query (a `paging.next` link already
    /// carries Meta's own `access_token` and `appsecret_proof`; ours replace them).
    private static func replacing(_ names: [String], in url: String) -> String {
        guard let question = url.firstIndex(of: "?") else { return url }
        let base = url[..<question]
        let kept = url[url.index(after: question)...].split(separator: "&").filter { pair in
            let name = pair.split(separator: "=", maxSplits: 1).first.map(String.init) ?? ""
            return !names.contains(name) && name != "access_token"
        }
        return kept.isEmpty ? String(base) : "\(base)?\(kept.joined(separator: "&"))"
    }
}

extension GraphClient {
    /// The Graph API a connection speaks on `platform`: `graph.instagram.com` (`instagram`) for
    /// Instagram messages of an Instagram-Login connection, Facebook's (`facebook`) for the
    /// rest; nil when that connection needs Instagram Login and it is not configured here.
    static func speaking(for credentials: some GraphConnection, on platform: Platform, facebook: GraphClient, instagram: GraphClient?) -> GraphClient? {
        credentials.usesInstagramLogin && platform == .instagram ? instagram : facebook
    }
}

extension GraphError {
    /// What failed, in our words, with Meta's code and fbtrace_id for support: never Meta's own
    /// text (which can quote anything) nor a token. `what` is what the call was for.
    public func inOurWords(_ what: String) -> String {
        var message = kind == .transport ? "the Graph API could not be reached to \(what)" : "the Graph API refused to \(what)"
        if let code { message += " (code \(code)\(subcode.map { ", subcode \($0)" } ?? ""))" }
        if let fbtraceId { message += " (fbtrace_id \(fbtraceId))" }
        return message
    }
}

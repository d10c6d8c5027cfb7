import MetaWebhooks

/// Every HTTP route of the product, in one table: `serve`'s gateway is built from it (which
/// function answers, which routes need its key), and `RouteTableTests` holds `template.yaml`'s
/// API Gateway routes to it (method, path, function, authorization).
public struct HTTPRoute: Sendable, Equatable {
    public enum Access: String, Sendable, Equatable {
        /// Meta's own routes and the person connecting: open, each proves itself (a signature,
        /// a signed state, a signed link).
        case open
        /// A route that acts for a tenant: IAM in AWS (auth-url: IAM or a JWT authorizer, the
        /// `AuthUrlAuthorization` parameter), the `SERVE_API_KEY` bearer locally.
        case tenant
    }

    public let method: String
    /// The path as API Gateway writes it, `{name}` for a path parameter.
    public let path: String
    /// The executable (and Lambda function) that answers it.
    public let function: String
    public let access: Access

    public init(_ method: String, _ path: String, _ function: String, _ access: Access) {
        self.method = method
        self.path = path
        self.function = function
        self.access = access
    }

    /// API Gateway's route key.
    public var key: String { "\(method) \(path)" }

    /// Whether a request's path is this route's (each `{name}` one non-empty segment).
    public func matches(path requested: String) -> Bool {
        let pattern = path.split(separator: "/", omittingEmptySubsequences: false)
        let given = requested.split(separator: "/", omittingEmptySubsequences: false)
        guard pattern.count == given.count else { return false }
        return zip(pattern, given).allSatisfy { expected, segment in
            expected.hasPrefix("{") && expected.hasSuffix("}") ? !segment.isEmpty : expected == segment
        }
    }
}

public enum Routes {
    public static let all: [HTTPRoute] = [
        HTTPRoute("GET", "/webhooks/meta", "verify", .open),
        HTTPRoute("POST", "/webhooks/meta", "receive", .open),
        HTTPRoute("GET", "/external/meta/auth-url", "auth-url", .tenant),
        HTTPRoute("GET", "/external/instagram/auth-url", "auth-url", .tenant),
        HTTPRoute("GET", "/external/meta/callback", "oauth-callback", .open),
        HTTPRoute("GET", "/external/instagram/callback", "oauth-callback", .open),
        HTTPRoute("POST", "/external/meta/whatsapp/signup", "oauth-callback", .open),
        HTTPRoute("POST", "/external/meta/connect/confirm", "oauth-callback", .open),
        HTTPRoute("GET", "/connect", "oauth-callback", .open),
        HTTPRoute("POST", "/messages", "send", .tenant),
        HTTPRoute("POST", "/conversations/pause", "send", .tenant),
        HTTPRoute("POST", "/conversations/resume", "send", .tenant),
        HTTPRoute("POST", "/conversations/status", "send", .tenant),
        HTTPRoute("GET", "/conversations", "send", .tenant),
        HTTPRoute("GET", "/external/meta/connections", "connections", .tenant),
        HTTPRoute("DELETE", "/external/meta/connections/{businessId}/{locationId}", "connections", .tenant),
        HTTPRoute("GET", "/external/meta/connections/{businessId}/{locationId}/settings", "connections", .tenant),
        HTTPRoute("PUT", "/external/meta/connections/{businessId}/{locationId}/settings", "connections", .tenant),
        HTTPRoute("GET", "/external/meta/messages/{messageId}", "connections", .tenant),
        HTTPRoute("GET", "/external/meta/whatsapp/templates", "connections", .tenant),
        HTTPRoute("POST", "/external/meta/deauthorize", "connections", .open),
        HTTPRoute("POST", "/external/meta/data-deletion", "connections", .open),
        HTTPRoute("GET", "/external/meta/data-deletion/status", "connections", .open),
    ]

    /// The route a request is for; `methodAllowed` false when the path is known under another method.
    public static func route(method: String, path: String) -> (route: HTTPRoute?, pathKnown: Bool) {
        let candidates = all.filter { $0.matches(path: path) }
        return (candidates.first { $0.method == method }, !candidates.isEmpty)
    }
}

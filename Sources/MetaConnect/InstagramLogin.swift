import Essentials
import FunctionRuntime
import HTTPTransport
import MetaGraph
import MetaTenancy
import MetaWebhooks

/// The Instagram API with Instagram Login (Business Login for Instagram): an Instagram
/// professional account connects without a Facebook Page. Its settings, read from the
/// environment once, and its calls:
/// - the authorization window, `GET https://www.instagram.com/oauth/authorize?client_id&
///   redirect_uri&response_type=code&scope&state`;
/// - the code for a short-lived token, `POST https://api.instagram.com/oauth/access_token`
///   (form: `client_id`, `client_secret`, `grant_type=authorization_code`, `redirect_uri`,
///   `code`), answering `{"data": [{"access_token", "user_id", "permissions"}]}`;
/// - the short-lived token for a long-lived one (60 days), `GET
///   https://graph.instagram.com/access_token?grant_type=ig_exchange_token&client_secret&
///   access_token`, answering `{"access_token", "token_type", "expires_in"}`;
/// - a refresh of a long-lived token at least 24 hours old, `GET
///   https://graph.instagram.com/refresh_access_token?grant_type=ig_refresh_token&access_token`;
/// - the account, `GET /{version}/me?fields=user_id,username`, and its webhooks, `POST
///   /{version}/me/subscribed_apps?subscribed_fields=...` on `graph.instagram.com`.
public struct InstagramLogin: Sendable {
    /// `loginType` of a connection (and of its identifier) made this way.
    public static let loginType = TenantDirectory.instagramLoginType
    public static let defaultScopes = "instagram_business_basic,instagram_business_manage_messages,instagram_business_manage_comments"
    /// The webhook fields a connected account is subscribed to.
    public static let subscribedFields = "messages,messaging_postbacks,message_reactions,messaging_seen,comments,live_comments"

    public let appId: String
    public let appSecret: String
    public let redirectURI: String
    public let scopes: String
    let stateSecretBase: String
    public let authorizeBaseURL: String
    public let apiBaseURL: String
    public let graphBaseURL: String
    public let graphVersion: String
    public let postConnectRedirectURI: String?
    public var stateLifetimeSeconds: Int64 = 600

    public init(
        appId: String, appSecret: String, redirectURI: String, scopes: String = defaultScopes, stateSecret: String,
        authorizeBaseURL: String = "https://www.instagram.com", apiBaseURL: String = "https://api.instagram.com",
        graphBaseURL: String = "https://graph.instagram.com", graphVersion: String = "v25.0", postConnectRedirectURI: String? = nil
    ) {
        func trimmed(_ url: String) -> String { url.hasSuffix("/") ? String(url.dropLast()) : url }
        self.appId = appId
        self.appSecret = appSecret
        self.redirectURI = redirectURI
        self.scopes = scopes
        self.stateSecretBase = stateSecret
        self.authorizeBaseURL = trimmed(authorizeBaseURL)
        self.apiBaseURL = trimmed(apiBaseURL)
        self.graphBaseURL = trimmed(graphBaseURL)
        self.graphVersion = graphVersion
        self.postConnectRedirectURI = postConnectRedirectURI
    }

    /// `INSTAGRAM_APP_ID`, `INSTAGRAM_APP_SECRET`, `INSTAGRAM_REDIRECT_URI`, `OAUTH_STATE_SECRET`
    /// required; `INSTAGRAM_OAUTH_SCOPES` and the base URLs (`INSTAGRAM_AUTHORIZE_BASE_URL`,
    /// `INSTAGRAM_API_BASE_URL`, `INSTAGRAM_GRAPH_BASE_URL`) optional.
    public init(environment: Environment) throws(ConfigurationError) {
        self.init(
            appId: try environment.required("INSTAGRAM_APP_ID"), appSecret: try environment.required("INSTAGRAM_APP_SECRET"),
            redirectURI: try environment.required("INSTAGRAM_REDIRECT_URI"),
            scopes: environment.value("INSTAGRAM_OAUTH_SCOPES", default: Self.defaultScopes),
            stateSecret: try environment.required("OAUTH_STATE_SECRET"),
            authorizeBaseURL: environment.value("INSTAGRAM_AUTHORIZE_BASE_URL", default: "https://www.instagram.com"),
            apiBaseURL: environment.value("INSTAGRAM_API_BASE_URL", default: "https://api.instagram.com"),
            graphBaseURL: environment.value("INSTAGRAM_GRAPH_BASE_URL", default: "https://graph.instagram.com"),
            graphVersion: environment.value("META_GRAPH_API_VERSION", default: "v25.0"),
            postConnectRedirectURI: environment["META_POST_CONNECT_REDIRECT_URI"])
    }

    /// Whether the environment configures Instagram Login at all (its app id is set).
    public static func isConfigured(_ environment: Environment) -> Bool {
        !(environment["INSTAGRAM_APP_ID"] ?? "").isEmpty
    }

    /// States of this flow are signed under a key of their own: a Facebook Login state never
    /// passes here, nor one of these there.
    var stateSecret: String { stateSecretBase + "\u{0}instagram-login" }

    public func newState(businessId: String, locationId: String, now: Int64) -> OAuthState {
        OAuthState(
            businessId: businessId, locationId: locationId, pageId: nil, redirectUri: redirectURI, nonce: OAuthState.randomNonce(),
            expiresAt: now + stateLifetimeSeconds)
    }

    /// The authorization window for a state.
    public func authorizeURL(state: OAuthState) -> String {
        let query = FormEncoding.query([
            ("client_id", appId), ("redirect_uri", state.redirectUri), ("response_type", "code"), ("scope", scopes),
            ("state", state.signed(secret: stateSecret)),
        ])
        return "\(authorizeBaseURL)/oauth/authorize?\(query)"
    }

    /// The Graph API of Instagram Login (`graph.instagram.com`), where its tokens speak.
    public func graph(transport: any HTTPTransport) -> GraphClient {
        GraphClient(transport: transport, baseURL: graphBaseURL, version: graphVersion, appSecret: appSecret, sendsAppSecretProof: false)
    }

    // MARK: Tokens

    public struct Token: Sendable, Equatable {
        public let accessToken: String
        /// Seconds the token is good for.
        public let expiresIn: Int64
    }

    public struct Grant: Sendable, Equatable {
        public let accessToken: String
        /// The person's Instagram-scoped id.
        public let userId: String
        public let permissions: [String]
    }

    /// The code for a short-lived token (the documented answer wraps it in `data`; a flat
    /// answer is read too).
    public func exchange(code: String, transport: any HTTPTransport, timeout: Duration) async throws(GraphError) -> Grant {
        let body = FormEncoding.query([
            ("client_id", appId), ("client_secret", appSecret), ("grant_type", "authorization_code"), ("redirect_uri", redirectURI),
            ("code", code),
        ])
        let answer = try await call(
            OutboundRequest(
                method: "POST", url: "\(apiBaseURL)/oauth/access_token",
                headers: [("Content-Type", "application/x-www-form-urlencoded"), ("Accept", "application/json")], body: Array(body.utf8)),
            transport: transport, timeout: timeout)
        let grant = answer["data"]?.array?.first ?? answer
        guard let token = grant["access_token"]?.string, !token.isEmpty, let userId = grant["user_id"]?.id else {
            throw GraphError(kind: .invalidResponse, message: "Instagram returned no access token for the code")
        }
        let permissions: [String]
        switch grant["permissions"] {
        case .string(let list)?: permissions = list.split(separator: ",").map { String($0).trimmingSpaces() }
        case .array(let list)?: permissions = list.compactMap(\.string)
        default: permissions = []
        }
        return Grant(accessToken: token, userId: userId, permissions: permissions)
    }

    /// A short-lived token for a long-lived one.
    public func longLived(_ shortToken: String, transport: any HTTPTransport, timeout: Duration) async throws(GraphError) -> Token {
        try await token(
            path: "access_token", query: [("grant_type", "ig_exchange_token"), ("client_secret", appSecret), ("access_token", shortToken)],
            transport: transport, timeout: timeout)
    }

    /// A long-lived token, at least 24 hours old and not expired, for a new one good for 60 days.
    public func refreshed(_ token: String, transport: any HTTPTransport, timeout: Duration) async throws(GraphError) -> Token {
        try await self.token(
            path: "refresh_access_token", query: [("grant_type", "ig_refresh_token"), ("access_token", token)], transport: transport,
            timeout: timeout)
    }

    private func token(path: String, query: [(String, String)], transport: any HTTPTransport, timeout: Duration) async throws(GraphError) -> Token {
        // Documented with the token in the query; these go to Instagram's own host only.
        let answer = try await call(
            OutboundRequest(method: "GET", url: "\(graphBaseURL)/\(path)?\(FormEncoding.query(query))", headers: [("Accept", "application/json")]),
            transport: transport, timeout: timeout)
        guard let token = answer["access_token"]?.string, !token.isEmpty else {
            throw GraphError(kind: .invalidResponse, message: "Instagram returned no access token")
        }
        let expiresIn = answer["expires_in"]?.int64 ?? 0
        guard (1...(366 * 24 * 3600)).contains(expiresIn) else {
            throw GraphError(kind: .invalidResponse, message: "Instagram returned a token without a usable expires_in")
        }
        return Token(accessToken: token, expiresIn: expiresIn)
    }

    /// One call outside the versioned Graph API, its error read as Meta writes it (the
    /// `error` object, or OAuth's `error_type` / `error_message`).
    private func call(_ request: OutboundRequest, transport: any HTTPTransport, timeout: Duration) async throws(GraphError) -> JSON {
        let response: OutboundResponse
        do {
            response = try await transport.send(request, timeout: timeout)
        } catch {
            throw GraphError(kind: .transport, message: error.message, notSent: error.kind == .connection)
        }
        let document = try? JSON.parse(response.body)
        if let error = document?["error"], error.object != nil {
            throw GraphError(
                kind: .graph, httpStatus: response.status, code: error["code"]?.int64.flatMap { Int(exactly: $0) },
                subcode: error["error_subcode"]?.int64.flatMap { Int(exactly: $0) }, type: error["type"]?.string,
                message: error["message"]?.string ?? "no message", fbtraceId: error["fbtrace_id"]?.string,
                isTransient: error["is_transient"]?.bool ?? false)
        }
        if let type = document?["error_type"]?.string {
            throw GraphError(
                kind: .graph, httpStatus: response.status, code: document?["code"]?.int64.flatMap { Int(exactly: $0) }, type: type,
                message: document?["error_message"]?.string ?? type)
        }
        guard (200..<300).contains(response.status), let document, document.object != nil else {
            throw GraphError(kind: .invalidResponse, httpStatus: response.status, message: "Instagram answered HTTP \(response.status) without a JSON object")
        }
        return document
    }
}

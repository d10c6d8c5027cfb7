import Essentials
import FunctionRuntime
import MetaTenancy
import MetaWebhooks

/// The settings of the Facebook Login flow, read from the environment once.
public struct OAuthConfig: Sendable {
    public let appId: String
    public let redirectURI: String
    public let allowedRedirectURIs: [String]
    public let scopes: String
    public let stateSecret: String
    public let dialogBaseURL: String
    public let graphVersion: String
    public let postConnectRedirectURI: String?
    /// How long a state stays valid.
    public let stateLifetimeSeconds: Int64
    /// Embedded Signup's Facebook Login for Business configuration (`META_WHATSAPP_CONFIG_ID`);
    /// without it the connect page offers no WhatsApp button.
    public var whatsappConfigId: String? = nil
    /// Meta's JavaScript SDK as the connect page loads it (`META_JS_SDK_URL`; a stand-in in tests).
    public var javascriptSDKURL = "https://connect.facebook.net/en_US/sdk.js"
    /// How long a connect link (`connectUrl`) is good for.
    public var connectLinkLifetimeSeconds: Int64 = 1800

    /// Messaging, and comments: reading them (`pages_read_engagement`, `instagram_manage_comments`)
    /// and replying publicly on Facebook (`pages_manage_engagement`), for locations that opt in.
    public static let defaultScopes =
        "pages_show_list,pages_messaging,pages_manage_metadata,instagram_basic,instagram_manage_messages,"
        + "pages_read_engagement,pages_manage_engagement,instagram_manage_comments"

    public init(
        appId: String, redirectURI: String, allowedRedirectURIs: [String] = [], scopes: String = defaultScopes,
        stateSecret: String, dialogBaseURL: String = "https://www.facebook.com", graphVersion: String = "v25.0",
        postConnectRedirectURI: String? = nil, stateLifetimeSeconds: Int64 = 600
    ) {
        self.appId = appId
        self.redirectURI = redirectURI
        self.allowedRedirectURIs = allowedRedirectURIs
        self.scopes = scopes
        self.stateSecret = stateSecret
        self.dialogBaseURL = dialogBaseURL.hasSuffix("/") ? String(dialogBaseURL.dropLast()) : dialogBaseURL
        self.graphVersion = graphVersion
        self.postConnectRedirectURI = postConnectRedirectURI
        self.stateLifetimeSeconds = stateLifetimeSeconds
    }

    public init(environment: Environment) throws(ConfigurationError) {
        self.init(
            appId: try environment.required("META_APP_ID"),
            redirectURI: try environment.required("META_REDIRECT_URI"),
            allowedRedirectURIs: (environment["META_ALLOWED_REDIRECT_URIS"] ?? "").split(separator: ",")
                .map { $0.trimmingSpaces() }.filter { !$0.isEmpty },
            scopes: environment.value("META_OAUTH_SCOPES", default: Self.defaultScopes),
            stateSecret: try environment.required("OAUTH_STATE_SECRET"),
            dialogBaseURL: environment.value("META_OAUTH_DIALOG_BASE_URL", default: "https://www.facebook.com"),
            graphVersion: environment.value("META_GRAPH_API_VERSION", default: "v25.0"),
            postConnectRedirectURI: environment["META_POST_CONNECT_REDIRECT_URI"])
        whatsappConfigId = environment["META_WHATSAPP_CONFIG_ID"].flatMap { $0.isEmpty ? nil : $0 }
        javascriptSDKURL = environment.value("META_JS_SDK_URL", default: javascriptSDKURL)
    }

    /// The Facebook Login dialog for a state.
    public func dialogURL(state: OAuthState) -> String {
        let query = FormEncoding.query([
            ("client_id", appId), ("redirect_uri", state.redirectUri), ("scope", scopes),
            ("response_type", "code"), ("state", state.signed(secret: stateSecret)),
        ])
        return "\(dialogBaseURL)/\(graphVersion)/dialog/oauth?\(query)"
    }

    /// A connect link's token is signed under a key of its own: it can never pass for an
    /// OAuth state, nor a state for it.
    var connectLinkSecret: String { stateSecret + "\u{0}connect-page" }

    /// `<origin of META_REDIRECT_URI>/connect?token=...`: the page of one business location,
    /// for `connectLinkLifetimeSeconds`.
    public func connectURL(businessId: String, locationId: String, now: Int64, businessName: String? = nil, locationName: String? = nil) -> String {
        let token = OAuthState(
            businessId: businessId, locationId: locationId, pageId: nil, redirectUri: "connect-page", nonce: OAuthState.randomNonce(),
            expiresAt: now + connectLinkLifetimeSeconds, businessName: businessName, locationName: locationName
        ).signed(secret: connectLinkSecret)
        return "\(Self.origin(of: redirectURI))/connect?\(FormEncoding.query([("token", token)]))"
    }

    /// The business location a connect link's token names, if it is ours and current.
    public func connectLink(_ token: String, now: Int64) -> Tenant? {
        connectLinkWithExpiry(token, now: now)?.tenant
    }

    /// The same, with when the link expires (epoch seconds).
    public func connectLinkWithExpiry(_ token: String, now: Int64) -> (tenant: Tenant, expiresAt: Int64)? {
        connectLinkState(token, now: now).map { (Tenant(businessId: $0.businessId, locationId: $0.locationId), $0.expiresAt) }
    }

    /// The whole of a connect link's token (with the names it carries), if it is ours and current.
    public func connectLinkState(_ token: String, now: Int64) -> OAuthState? {
        guard let state = try? OAuthState.verify(token, secret: connectLinkSecret, now: now), state.redirectUri == "connect-page" else { return nil }
        return state
    }

    static func origin(of url: String) -> String {
        guard let schemeEnd = url.firstRange(of: "://") else { return "" }
        let rest = url[schemeEnd.upperBound...]
        return String(url[..<schemeEnd.upperBound]) + rest.prefix { $0 != "/" && $0 != "?" && $0 != "#" }
    }

    public func isAllowed(redirectURI uri: String) -> Bool {
        uri == redirectURI || allowedRedirectURIs.contains(uri)
    }
}

import FunctionRuntime

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

    public static let defaultScopes = "pages_show_list,pages_messaging,pages_manage_metadata,instagram_basic,instagram_manage_messages"

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
    }

    public func isAllowed(redirectURI uri: String) -> Bool {
        uri == redirectURI || allowedRedirectURIs.contains(uri)
    }
}

/// Identifiers we accept from outside: letters, digits and `-_.:#@`, 1 to 128 characters.
func isValidIdentifier(_ text: String) -> Bool {
    !text.isEmpty && text.utf8.count <= 128
        && text.unicodeScalars.allSatisfy { $0.isASCII && (($0.properties.isAlphabetic) || ("0"..."9").contains($0) || "-_.:#@".unicodeScalars.contains($0)) }
}

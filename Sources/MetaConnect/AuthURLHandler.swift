import FunctionRuntime
import HTTPTransport
import Logging
import MetaTenancy
import MetaWebhooks

/// `GET /external/meta/auth-url`: the Facebook Login dialog URL for one business location,
/// with a signed, expiring `state` (SPEC section 4, auth-url).
public struct AuthURLHandler: Sendable {
    public let config: OAuthConfig
    public let clock: WallClock
    /// Business Login for Instagram (`GET /external/instagram/auth-url`), or why it is not
    /// configured.
    public let instagram: Result<InstagramLogin, ConfigurationError>

    public init(
        config: OAuthConfig,
        instagram: Result<InstagramLogin, ConfigurationError> = .failure(
            ConfigurationError(variable: "INSTAGRAM_APP_ID", problem: "is required for Instagram Login")),
        clock: WallClock = .system
    ) {
        self.config = config
        self.instagram = instagram
        self.clock = clock
    }

    /// Both flows from the environment: Facebook Login's settings are required, Instagram
    /// Login's are read when `INSTAGRAM_APP_ID` is set (its route answers 503 otherwise).
    public init(environment: Environment) throws(ConfigurationError) {
        let instagram: Result<InstagramLogin, ConfigurationError>
        if InstagramLogin.isConfigured(environment) {
            instagram = Result { () throws(ConfigurationError) in try InstagramLogin(environment: environment) }
            if case .failure(let error) = instagram { throw error }
        } else {
            instagram = .failure(ConfigurationError(variable: "INSTAGRAM_APP_ID", problem: "is required for Instagram Login"))
        }
        self.init(config: try OAuthConfig(environment: environment), instagram: instagram)
    }

    struct Answer: Encodable {
        let url: String
        let clientId: String
        let redirectUri: String
        /// The location's connect page (both buttons), good for 30 minutes.
        let connectUrl: String
    }

    public func handle(_ request: HTTPRequest, logger: Logger) throws(RequestRefused) -> HTTPResponse {
        guard let businessId = request.queryValue("businessId"), isValidIdentifier(businessId) else {
            throw RequestRefused(400, code: .invalidBusinessId, "businessId is required: 1 to 128 letters, digits or -_.:#@")
        }
        guard let locationId = request.queryValue("locationId"), isValidIdentifier(locationId) else {
            throw RequestRefused(400, code: .invalidLocationId, "locationId is required: 1 to 128 letters, digits or -_.:#@")
        }
        let pageId = request.queryValue("pageId").flatMap { $0.isEmpty ? nil : $0 }
        if let pageId, !pageId.allSatisfy(\.isNumber) || pageId.count > 32 {
            throw RequestRefused(400, code: .invalidPageId, "pageId must be a Facebook Page id (digits)")
        }
        let (businessName, locationName) = try Self.displayNames(request)
        let redirectURI = request.queryValue("redirectUri").flatMap { $0.isEmpty ? nil : $0 } ?? config.redirectURI
        guard config.isAllowed(redirectURI: redirectURI) else {
            logger.warning("auth-url refused: redirect URI not allowed")
            throw RequestRefused(400, code: .redirectUriNotAllowed, "redirectUri must be META_REDIRECT_URI or one of META_ALLOWED_REDIRECT_URIS")
        }
        let state = OAuthState(
            businessId: businessId, locationId: locationId, pageId: pageId, redirectUri: redirectURI,
            nonce: OAuthState.randomNonce(), expiresAt: clock.epochSeconds() + config.stateLifetimeSeconds, businessName: businessName,
            locationName: locationName)
        logger.info("auth URL issued", metadata: ["businessId": "\(businessId)", "locationId": "\(locationId)"])
        return .json(
            200,
            Answer(
                url: config.dialogURL(state: state), clientId: config.appId, redirectUri: redirectURI,
                connectUrl: config.connectURL(
                    businessId: businessId, locationId: locationId, now: clock.epochSeconds(), businessName: businessName, locationName: locationName)))
    }

    /// `businessName` and `locationName`: what the person connecting is shown (signed into the
    /// state and the connect link). Optional; the ids are shown without them.
    static func displayNames(_ request: HTTPRequest) throws(RequestRefused) -> (String?, String?) {
        var names: [String?] = []
        for field in ["businessName", "locationName"] {
            guard let text = request.queryValue(field), !text.isEmpty else {
                names.append(nil)
                continue
            }
            guard let name = DisplayName.checked(text) else {
                throw RequestRefused(
                    400, code: .invalidDisplayName,
                    "\(field) must be 1 to \(DisplayName.maxCharacters) characters, without control, invisible or direction-changing characters")
            }
            names.append(name)
        }
        return (names[0], names[1])
    }

    public var function: HTTPFunction {
        HTTPFunction { request, context in
            guard request.path == InstagramLoginHandler.authURLPath else { return try self.handle(request, logger: context.logger) }
            switch instagram {
            case .success(let login):
                return try InstagramLoginHandler.authURL(request, login: login, now: clock.epochSeconds(), logger: context.logger)
            case .failure(let problem):
                throw RequestRefused(503, code: .instagramLoginNotConfigured, "Instagram Login is not configured: \(problem)")
            }
        }
    }
}

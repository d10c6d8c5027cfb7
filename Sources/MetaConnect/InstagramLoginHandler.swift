import FunctionRuntime
import HTTPTransport
import Logging
import MetaGraph
import MetaTelemetry
import MetaTenancy
import MetaWebhooks

/// Business Login for Instagram, for one business location: `GET
/// /external/instagram/auth-url?businessId=&locationId=` (the authorization window's URL with
/// a signed, single-use state), and `GET /external/instagram/callback` (the state checked
/// before any call, the code exchanged for a short-lived token and that for a long-lived one,
/// the professional account read, subscribed to webhooks, its id claimed, and the connection
/// stored with the token's expiry). Codes and tokens never reach the answer or the logs.
public struct InstagramLoginHandler: Sendable {
    public static let authURLPath = "/external/instagram/auth-url"
    public static let callbackPath = "/external/instagram/callback"

    public let login: InstagramLogin
    public let transport: any HTTPTransport
    public let directory: TenantDirectory
    public let ledger: MessageLedger
    public let clock: WallClock
    public let timeout: Duration
    /// Where what the callback found waits for the person's confirmation.
    public let consent: ConsentHandler

    public init(
        login: InstagramLogin, transport: any HTTPTransport, directory: TenantDirectory, ledger: MessageLedger, clock: WallClock = .system,
        timeout: Duration = .seconds(8)
    ) {
        self.login = login
        self.transport = transport
        self.directory = directory
        self.ledger = ledger
        self.clock = clock
        self.timeout = timeout
        self.consent = ConsentHandler(
            consents: Consents(store: ledger.store, table: ledger.table, clock: clock), directory: directory, graph: nil,
            instagramGraph: login.graph(transport: transport), postConnectRedirectURI: login.postConnectRedirectURI, timeout: timeout)
    }

    typealias Failure = ConnectFlow.Failure
    typealias Outcome = ConnectFlow.Outcome

    struct AuthURL: Encodable {
        let url: String
        let clientId: String
        let redirectUri: String
    }

    /// The authorization window's URL (the auth-url function's Instagram route).
    public static func authURL(_ request: HTTPRequest, login: InstagramLogin, now: Int64, logger: Logger) throws(RequestRefused) -> HTTPResponse {
        guard let businessId = request.queryValue("businessId"), isValidIdentifier(businessId) else {
            throw RequestRefused(400, code: .invalidBusinessId, "businessId is required: 1 to 128 letters, digits or -_.:#@")
        }
        guard let locationId = request.queryValue("locationId"), isValidIdentifier(locationId) else {
            throw RequestRefused(400, code: .invalidLocationId, "locationId is required: 1 to 128 letters, digits or -_.:#@")
        }
        let (businessName, locationName) = try AuthURLHandler.displayNames(request)
        var state = login.newState(businessId: businessId, locationId: locationId, now: now)
        state.businessName = businessName
        state.locationName = locationName
        logger.info("Instagram authorization URL issued", metadata: ["businessId": "\(businessId)", "locationId": "\(locationId)"])
        return .json(200, AuthURL(url: login.authorizeURL(state: state), clientId: login.appId, redirectUri: login.redirectURI))
    }

    public func handle(_ request: HTTPRequest, logger: Logger, events: ConversationEvents? = nil) async -> HTTPResponse {
        await ConnectFlow.callback(
            request, secret: login.stateSecret, now: clock.epochSeconds(), allowed: { $0 == login.redirectURI }, flow: "Instagram Login",
            logger: logger, answer: answer
        ) { state in
            // Instagram appends `#_` to the redirect; a code never contains it.
            guard let code = request.queryValue("code").map({ $0.hasSuffix("#_") ? String($0.dropLast(2)) : $0 }), !code.isEmpty else {
                throw Failure(status: 400, code: .missingCode, message: "the code parameter is missing")
            }
            try await ConnectFlow.useOnce(state, ledger: ledger)
            let grant: InstagramLogin.Grant
            do throws(GraphError) {
                grant = try await login.exchange(code: code, transport: transport, timeout: timeout)
            } catch {
                throw Failure.graph(
                    error, status: error.kind == .graph && !error.isTransient ? 400 : 502, code: .codeExchangeFailed, what: "exchange the code")
            }
            if !grant.permissions.isEmpty, !grant.permissions.contains("instagram_business_manage_messages") {
                throw Failure(
                    status: 400, code: .permissionsDeclined,
                    message: "the person declined instagram_business_manage_messages, without which no reply can be sent; connect again and allow it")
            }
            let issuedAt = clock.epochSeconds()
            let token: InstagramLogin.Token
            do throws(GraphError) {
                token = try await login.longLived(grant.accessToken, transport: transport, timeout: timeout)
            } catch {
                throw Failure.graph(error, status: 502, code: .graphError, what: "issue a long-lived token")
            }
            let graph = login.graph(transport: transport)
            let account = try await ConnectFlow.graphCall(
                graph, "GET", "me", query: [("fields", "user_id,username")], token: token.accessToken, timeout: timeout, what: "read the account")
            guard let accountId = account["user_id"]?.id else {
                throw Failure(status: 502, code: .graphError, message: "Instagram did not say which professional account logged in")
            }
            let username = account["username"]?.string.flatMap(DisplayName.checked).map { String($0.prefix(64)) }
            // Nothing is connected yet: the person sees what would join what, and confirms it.
            logger.info("the person is asked to confirm the connection", metadata: ["businessId": "\(state.businessId)", "instagramAccountId": "\(accountId)"])
            return try await consent.ask(
                PendingConnection(
                    flow: .instagramLogin, tenant: Tenant(businessId: state.businessId, locationId: state.locationId), businessName: state.businessName,
                    locationName: state.locationName, instagramAccountId: accountId, instagramUsername: username, token: token.accessToken,
                    connectedBy: "instagram:\(grant.userId)", tokenIssuedAt: issuedAt, tokenExpiresAt: issuedAt + token.expiresIn))
        }
    }

    private func answer(_ outcome: Outcome, httpStatus: Int) -> HTTPResponse {
        ConnectFlow.answer(outcome, httpStatus: httpStatus, postConnectRedirectURI: login.postConnectRedirectURI)
    }
}

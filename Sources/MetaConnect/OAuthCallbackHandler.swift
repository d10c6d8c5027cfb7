import FunctionRuntime
import HTTPTransport
import KeyValueStore
import Logging
import MetaGraph
import MetaTelemetry
import MetaTenancy
import MetaWebhooks

/// `GET /external/meta/callback`: the end of the Facebook Login flow (SPEC section 4,
/// oauth-callback; Meta for Developers, "Manually Build a Login Flow" and "Long-Lived Access
/// Tokens"). Verifies the state (no Graph call before that), exchanges the code, finds the
/// Page to connect, claims its identifiers, subscribes the Page to the app's webhooks and
/// stores the Page token. Codes and tokens never appear in the answer or the logs.
public struct OAuthCallbackHandler: Sendable {
    public let config: OAuthConfig
    public let appSecret: String
    public let graph: GraphClient
    public let directory: TenantDirectory
    public let ledger: MessageLedger
    public let clock: WallClock
    public let timeout: Duration
    /// Where what the callback found waits for the person's confirmation.
    public let consent: ConsentHandler

    /// The webhook fields a connected Page is subscribed to.
    public static let subscribedFields = "messages,messaging_postbacks,message_echoes,message_reactions,messaging_handovers,feed"

    public init(
        config: OAuthConfig, appSecret: String, graph: GraphClient, directory: TenantDirectory, ledger: MessageLedger,
        clock: WallClock = .system, timeout: Duration = .seconds(8)
    ) {
        self.config = config
        self.appSecret = appSecret
        self.graph = graph
        self.directory = directory
        self.ledger = ledger
        self.clock = clock
        self.timeout = timeout
        self.consent = ConsentHandler(
            consents: Consents(store: ledger.store, table: ledger.table, clock: clock), directory: directory, graph: graph, instagramGraph: nil,
            postConnectRedirectURI: config.postConnectRedirectURI, timeout: timeout)
    }

    struct Page: Sendable {
        let id: String
        let name: String?
        let accessToken: String
        var instagramAccountId: String?
        var instagramUsername: String?
    }

    typealias Outcome = ConnectFlow.Outcome
    typealias Failure = ConnectFlow.Failure

    public func handle(_ request: HTTPRequest, logger: Logger, events: ConversationEvents? = nil) async -> HTTPResponse {
        await ConnectFlow.callback(
            request, secret: config.stateSecret, now: clock.epochSeconds(), allowed: config.isAllowed(redirectURI:), flow: "Facebook Login",
            logger: logger, answer: answer
        ) { state in
            guard let code = request.queryValue("code"), !code.isEmpty else {
                throw Failure(status: 400, code: .missingCode, message: "the code parameter is missing")
            }
            try await ConnectFlow.useOnce(state, ledger: ledger)
            let userToken = try await exchange(code: code, redirectURI: state.redirectUri)
            // Who connected (Meta's deauthorize and data-deletion callbacks name this id), and
            // what they granted: a declined messaging permission is said now, not discovered
            // when the first reply fails.
            let person = try await graphCall("GET", "me", query: [("fields", "id")], token: userToken, what: "identify the person")
            guard let userId = person["id"]?.id else {
                throw Failure(status: 502, code: .graphError, message: "the Graph API did not say who logged in")
            }
            let permissions = try await graphCall("GET", "me/permissions", query: [], token: userToken, what: "read the granted permissions")
            let declined = Set(
                (permissions["data"]?.array ?? []).compactMap { entry -> String? in
                    guard let name = entry["permission"]?.string, entry["status"]?.string != "granted" else { return nil }
                    return name
                })
            let pages = try await pagesWithInstagram(userToken: userToken)
            let chosen: Page
            if let wanted = state.pageId {
                guard let page = pages.first(where: { $0.id == wanted }) else {
                    throw Failure(status: 400, code: .pageNotFound, message: "the person does not manage the Page named in the request")
                }
                chosen = page
            } else {
                guard let page = pages.first(where: { $0.instagramAccountId != nil }) else {
                    throw Failure(
                        status: 400, code: .noInstagramAccount,
                        message: "none of the person's Pages has an Instagram professional account connected")
                }
                chosen = page
            }
            let needed = ["pages_messaging"] + (chosen.instagramAccountId != nil ? ["instagram_manage_messages"] : [])
            let missing = needed.filter { declined.contains($0) }
            guard missing.isEmpty else {
                throw Failure(
                    status: 400, code: .permissionsDeclined,
                    message: "the person declined \(missing.joined(separator: " and ")), without which no reply can be sent; connect again and allow it")
            }
            // Nothing is connected yet: the person sees what would join what, and confirms it.
            logger.info(
                "the person is asked to confirm the connection",
                metadata: ["businessId": "\(state.businessId)", "pageId": "\(chosen.id)", "instagramAccountId": "\(chosen.instagramAccountId ?? "-")"])
            return try await consent.ask(
                PendingConnection(
                    flow: .facebookLogin, tenant: Tenant(businessId: state.businessId, locationId: state.locationId), businessName: state.businessName,
                    locationName: state.locationName, pageId: chosen.id, pageName: chosen.name.map { String($0.prefix(200)) },
                    instagramAccountId: chosen.instagramAccountId, instagramUsername: chosen.instagramUsername, token: chosen.accessToken,
                    connectedBy: userId))
        }
    }

    // MARK: Steps

    /// The code for a short-lived user token, then that for a long-lived one.
    private func exchange(code: String, redirectURI: String) async throws -> String {
        let short: JSON
        do {
            short = try await graph.call(
                "GET", "oauth/access_token",
                query: [
                    ("client_id", config.appId), ("client_secret", appSecret), ("redirect_uri", redirectURI), ("code", code),
                ], token: nil, timeout: timeout)
        } catch {
            throw Failure.graph(
                error, status: error.kind == .graph && !error.isTransient ? 400 : 502, code: .codeExchangeFailed,
                what: "exchange the code")
        }
        guard let shortToken = short["access_token"]?.string else {
            throw Failure(status: 502, code: .codeExchangeFailed, message: "the Graph API returned no access token")
        }
        let long = try await graphCall(
            "GET", "oauth/access_token",
            query: [
                ("grant_type", "fb_exchange_token"), ("client_id", config.appId), ("client_secret", appSecret),
                ("fb_exchange_token", shortToken),
            ], token: shortToken, what: "issue a long-lived token")
        guard let longToken = long["access_token"]?.string else {
            throw Failure(status: 502, code: .graphError, message: "the Graph API returned no long-lived token")
        }
        return longToken
    }

    /// Every Page the person manages (following `paging.next`), with its Instagram account.
    private func pagesWithInstagram(userToken: String) async throws -> [Page] {
        var pages: [Page] = []
        var next: String? = "me/accounts"
        var query: [(String, String)] = [("fields", "id,name,access_token"), ("limit", "100")]
        var seen = 0
        while let path = next, seen < 50 {
            seen += 1
            let answer = try await graphCall("GET", path, query: query, token: userToken, what: "list the person's Pages")
            for item in answer["data"]?.array ?? [] {
                guard let id = item["id"]?.id, let token = item["access_token"]?.string else { continue }
                pages.append(Page(id: id, name: item["name"]?.string, accessToken: token))
            }
            next = answer["paging"]?["next"]?.string
            query = []
        }
        for index in pages.indices {
            // The account's username comes with it (field expansion), for the consent page.
            let answer = try await graphCall(
                "GET", pages[index].id, query: [("fields", "instagram_business_account{id,username}")],
                token: pages[index].accessToken, what: "read a Page's Instagram account")
            pages[index].instagramAccountId = answer["instagram_business_account"]?["id"]?.id
            pages[index].instagramUsername = answer["instagram_business_account"]?["username"]?.string.flatMap(DisplayName.checked)
        }
        return pages
    }

    private func graphCall(_ method: String, _ path: String, query: [(String, String)], token: String, what: String) async throws -> JSON {
        try await ConnectFlow.graphCall(graph, method, path, query: query, token: token, timeout: timeout, what: what)
    }

    // MARK: Answer

    private func answer(_ outcome: Outcome, httpStatus: Int) -> HTTPResponse {
        ConnectFlow.answer(outcome, httpStatus: httpStatus, postConnectRedirectURI: config.postConnectRedirectURI)
    }

    public var function: HTTPFunction {
        HTTPFunction { request, context in await self.handle(request, logger: context.logger) }
    }
}

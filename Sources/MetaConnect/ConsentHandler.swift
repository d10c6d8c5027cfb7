import FunctionRuntime
import HTTPTransport
import KeyValueStore
import Logging
import MetaGraph
import MetaTelemetry
import MetaTenancy
import MetaWebhooks

/// The person confirms what joins what (issue 38). A connect flow's callback no longer
/// connects: it holds what it found (`Consents`) and answers this page, which names the
/// accounts as the person knows them (the Page's name, the Instagram username) and the
/// business and location they would join (the names the link carried, signed), with
/// "Connect" and "Cancel". `POST /external/meta/connect/confirm` (a form of that page, same
/// origin only) then connects them, or on "Cancel" forgets them; either way once.
///
/// What it protects against: a tenant sending a stranger its own dialog link, so that the
/// stranger's Page would join the tenant's business unseen. What it does not: a stranger who
/// reads the page and confirms all the same, or a business whose names were set falsely by
/// the platform that calls `auth-url` (the names are that platform's word).
public struct ConsentHandler: Sendable {
    public let consents: Consents
    public let directory: TenantDirectory
    /// Facebook Login's Graph API and Instagram Login's (nil: not configured).
    public let graph: GraphClient?
    public let instagramGraph: GraphClient?
    public let postConnectRedirectURI: String?
    public let timeout: Duration

    public static let confirmPath = "/external/meta/connect/confirm"

    public init(
        consents: Consents, directory: TenantDirectory, graph: GraphClient?, instagramGraph: GraphClient?, postConnectRedirectURI: String?,
        timeout: Duration = .seconds(8)
    ) {
        self.consents = consents
        self.directory = directory
        self.graph = graph
        self.instagramGraph = instagramGraph
        self.postConnectRedirectURI = postConnectRedirectURI
        self.timeout = timeout
    }

    typealias Failure = ConnectFlow.Failure
    typealias Outcome = ConnectFlow.Outcome

    // MARK: The page

    /// Holds `pending` and answers the page that asks the person to confirm it.
    func ask(_ pending: PendingConnection) async throws(Failure) -> HTTPResponse {
        let nonce: String
        do {
            nonce = try await consents.hold(pending)
        } catch {
            throw Failure(status: 503, code: .storeUnavailable, message: "the connection could not be held for your confirmation: \(error.code.rawValue)")
        }
        return Self.page(pending, nonce: nonce)
    }

    /// The accounts as the person knows them.
    static func accounts(_ pending: PendingConnection) -> [String] {
        var accounts: [String] = []
        if let number = pending.phoneNumberId {
            accounts.append(
                "the WhatsApp number \(pending.displayPhoneNumber ?? number)" + (pending.verifiedName.map { " (\($0))" } ?? ""))
        }
        if let page = pending.pageId { accounts.append("the Facebook Page “\(pending.pageName ?? page)”") }
        if let username = pending.instagramUsername {
            accounts.append("the Instagram account @\(username)")
        } else if let instagram = pending.instagramAccountId {
            accounts.append("the Instagram account \(instagram)")
        }
        return accounts
    }

    /// The question in one sentence (the WhatsApp signup's page shows it).
    static func question(_ pending: PendingConnection) -> String {
        let business = pending.businessName ?? "business \(pending.tenant.businessId)"
        let location = pending.locationName ?? "location \(pending.tenant.locationId)"
        return "Connect \(accounts(pending).joined(separator: " and ")) to \(business), \(location)?"
    }

    static func page(_ pending: PendingConnection, nonce: String) -> HTTPResponse {
        let escape = ConnectPageHandler.escape
        let business = pending.businessName ?? "business \(pending.tenant.businessId)"
        let location = pending.locationName ?? "location \(pending.tenant.locationId)"
        let accounts = accounts(pending).map { "<li>\(escape($0))</li>" }.joined()
        let minutes = Consents.lifetimeSeconds / 60
        let body = """
            <p>You are about to connect</p>
            <ul id="accounts">\(accounts)</ul>
            <p>to <strong id="business">\(escape(business))</strong>, <strong id="location">\(escape(location))</strong>.</p>
            <p>That business's assistant will then read and answer these accounts' messages and comments with the access you just granted.
            If you do not know this business, or did not ask to connect it, cancel: nothing will be connected.</p>
            <form method="post" action="\(confirmPath)">
            <input type="hidden" name="consent" value="\(nonce)">
            <button type="submit" name="decision" value="confirm" id="confirm">Connect</button>
            <button type="submit" name="decision" value="cancel" id="cancel">Cancel</button>
            </form>
            <p><small>This question is good for \(minutes) minutes and for one answer.</small></p>
            """
        return Self.html(200, title: "Connect to \(business)?", body: body)
    }

    static func html(_ status: Int, title: String, body: String) -> HTTPResponse {
        let escape = ConnectPageHandler.escape
        let document = """
            <!doctype html>
            <html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
            <title>\(escape(title))</title></head>
            <body><main><h1>\(escape(title))</h1>\(body)</main></body></html>
            """
        // No script, style, frame or resource of anyone's; the form posts to us only, and no
        // other site may frame the page to make the person click.
        return HTTPResponse(
            status: status,
            headers: [
                "Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store",
                "Content-Security-Policy": "default-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
                // same-origin: the page's own form carries its origin (with no-referrer a browser
                // sends `Origin: null`); no other site learns the page's address.
                "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin", "X-Frame-Options": "DENY",
            ], body: document)
    }

    // MARK: The answer

    public func handle(_ request: HTTPRequest, logger: Logger, events: ConversationEvents? = nil) async -> HTTPResponse {
        guard request.method == "POST" else {
            return Self.html(405, title: "Not here", body: "<p>Answer the question on the page that asked it.</p>")
        }
        guard Self.isSameOrigin(request) else {
            logger.warning("consent refused: not from our own page")
            return Self.html(
                403, title: "Not confirmed", body: "<p>This answer did not come from our confirmation page, so nothing was connected.</p>")
        }
        let form = QueryString.parse(String(decoding: request.body.prefix(4096), as: UTF8.self))
        let decision = form["decision"]?.first
        guard request.body.count <= 4096, let nonce = form["consent"]?.first, decision == "confirm" || decision == "cancel" else {
            return Self.html(400, title: "Not understood", body: "<p>The answer was not one of the page's buttons.</p>")
        }
        let pending: PendingConnection?
        do {
            pending = try await consents.take(nonce)
        } catch {
            return Self.html(503, title: "Please try again", body: "<p>Your answer could not be recorded just now; start the connection again.</p>")
        }
        guard let pending else {
            logger.info("consent refused: unknown, already answered or expired")
            return Self.html(
                410, title: "This question was already answered",
                body: "<p>It was answered before, or it expired. Nothing more was done; start the connection again if you need to.</p>")
        }
        var outcome = Outcome(status: "error", businessId: pending.tenant.businessId, locationId: pending.tenant.locationId)
        do throws(Failure) {
            if decision == "cancel" {
                try? await consents.discard(nonce)
                logger.info("the person cancelled the connection", metadata: ["businessId": "\(pending.tenant.businessId)"])
                outcome.status = "cancelled"
                return answer(outcome, httpStatus: 200, flow: pending.flow)
            }
            try await connect(pending, logger: logger)
            try? await consents.discard(nonce)
            events?.add(
                ConversationEvent(
                    .connectionMade, businessId: pending.tenant.businessId, locationId: pending.tenant.locationId,
                    platform: pending.flow == .whatsappSignup ? .whatsapp : nil,
                    reason: pending.flow == .facebookLogin ? "facebook_login" : pending.flow == .instagramLogin ? "instagram_login" : "whatsapp_signup"))
            outcome.status = "connected"
            outcome.wabaId = pending.wabaId
            outcome.phoneNumberId = pending.phoneNumberId
            outcome.displayPhoneNumber = pending.displayPhoneNumber
            outcome.pageId = pending.pageId
            outcome.pageName = pending.pageName
            outcome.instagramAccountId = pending.instagramAccountId
            outcome.instagramUsername = pending.instagramUsername
            return answer(outcome, httpStatus: 200, flow: pending.flow)
        } catch {
            try? await consents.discard(nonce)
            logger.warning(
                "connection failed: \(error.code)", metadata: ["businessId": "\(pending.tenant.businessId)", "detail": "\(error.detail ?? error.message)"])
            outcome.error = error.code
            outcome.message = error.message
            return answer(outcome, httpStatus: error.status, flow: pending.flow)
        }
    }

    /// A form posted by our own page: the browser's `Origin` is this host, or (a browser that
    /// withholds the origin sends `null`) its `Sec-Fetch-Site` says `same-origin`, a header no
    /// page can set. A `Sec-Fetch-Site` other than `same-origin`, another origin, or neither
    /// header is refused.
    static func isSameOrigin(_ request: HTTPRequest) -> Bool {
        guard let host = request.headers["host"], !host.isEmpty else { return false }
        let site = request.headers["sec-fetch-site"]
        if let site, site != "same-origin" { return false }
        switch request.headers["origin"] {
        case let origin? where origin != "null": return origin == "https://\(host)" || origin == "http://\(host)"
        default: return site == "same-origin"
        }
    }

    /// Stores the connection and subscribes its account to the app's webhooks, each flow its
    /// own way: a Page (and its Instagram account) through Facebook Login, an Instagram account
    /// through Instagram Login, a WhatsApp number through Embedded Signup.
    func connect(_ pending: PendingConnection, logger: Logger) async throws(Failure) {
        switch pending.flow {
        case .whatsappSignup: try await connectWhatsApp(pending, logger: logger)
        case .facebookLogin: try await connectPage(pending, logger: logger)
        case .instagramLogin: try await connectInstagramAccount(pending, logger: logger)
        }
    }

    func connectPage(_ pending: PendingConnection, logger: Logger) async throws(Failure) {
        guard let pageId = pending.pageId else { throw Self.noAccount }
        guard let graph else { throw Failure(status: 503, code: .graphError, message: "Facebook Login is not configured here") }
        do throws(TenantDirectory.ConnectError) {
            try await directory.connect(
                tenant: pending.tenant, pageId: pageId, instagramAccountId: pending.instagramAccountId, pageAccessToken: pending.token,
                connectedBy: pending.connectedBy, pageName: pending.pageName, instagramUsername: pending.instagramUsername)
        } catch {
            throw Self.failure(error)
        }
        try await recordConnector(of: pending)
        let answer = try await ConnectFlow.graphCall(
            graph, "POST", "\(pageId)/subscribed_apps", query: [("subscribed_fields", OAuthCallbackHandler.subscribedFields)],
            token: pending.token, timeout: timeout, what: "subscribe the Page to webhooks")
        try Self.confirmed(answer)
        Self.logConnected(pending, logger: logger)
    }

    func connectInstagramAccount(_ pending: PendingConnection, logger: Logger) async throws(Failure) {
        guard let accountId = pending.instagramAccountId else { throw Self.noAccount }
        guard let instagramGraph else {
            throw Failure(status: 503, code: .instagramLoginNotConfigured, message: "Instagram Login is not configured here")
        }
        do throws(TenantDirectory.ConnectError) {
            try await directory.connectInstagramLogin(
                tenant: pending.tenant, instagramAccountId: accountId, username: pending.instagramUsername, token: pending.token,
                issuedAt: pending.tokenIssuedAt ?? 0, expiresAt: pending.tokenExpiresAt ?? 0, connectedBy: pending.connectedBy)
        } catch {
            throw Self.failure(error)
        }
        try await recordConnector(of: pending)
        let answer = try await ConnectFlow.graphCall(
            instagramGraph, "POST", "me/subscribed_apps", query: [("subscribed_fields", InstagramLogin.subscribedFields)], token: pending.token,
            timeout: timeout, what: "subscribe the account to webhooks")
        try Self.confirmed(answer)
        Self.logConnected(pending, logger: logger)
    }

    static let noAccount = Failure(status: 500, code: .graphError, message: "the pending connection names no account")

    static func failure(_ error: TenantDirectory.ConnectError) -> Failure {
        switch error {
        case .ownedByAnotherBusiness:
            Failure(status: 409, code: .alreadyConnected, message: "this Page or Instagram account is connected to another business")
        case .store(let error):
            Failure(status: 503, code: .storeUnavailable, message: "the connection could not be stored: \(error.code.rawValue)")
        }
    }

    /// The person who connected, for Meta's deauthorize and data-deletion callbacks.
    func recordConnector(of pending: PendingConnection) async throws(Failure) {
        guard !pending.connectedBy.isEmpty else { return }
        do {
            try await directory.recordConnector(userId: pending.connectedBy, tenant: pending.tenant)
        } catch {
            throw Failure(status: 503, code: .storeUnavailable, message: "the connection could not be stored: \(error.code.rawValue)")
        }
    }

    static func confirmed(_ subscription: JSON) throws(Failure) {
        guard subscription["success"]?.bool == true else {
            throw Failure(status: 502, code: .subscriptionFailed, message: "Meta did not confirm the webhook subscription")
        }
    }

    static func logConnected(_ pending: PendingConnection, logger: Logger) {
        logger.info(
            "business connected, as the person confirmed",
            metadata: [
                "businessId": "\(pending.tenant.businessId)", "flow": "\(pending.flow.rawValue)", "pageId": "\(pending.pageId ?? "-")",
                "instagramAccountId": "\(pending.instagramAccountId ?? "-")",
            ])
    }

    /// The outcome: JSON, or for a login flow with a post-connect page a 302 there. WhatsApp's
    /// answer is always JSON: the connect page's script reads it.
    /// WhatsApp Embedded Signup's last steps, once the person confirmed: the app subscribed to
    /// the WABA's webhooks, the number registered for the Cloud API with a PIN made here, then
    /// the connection stored (its number claimed like a Page).
    func connectWhatsApp(_ pending: PendingConnection, logger: Logger) async throws(Failure) {
        guard let graph, let wabaId = pending.wabaId, let phoneNumberId = pending.phoneNumberId else {
            throw Failure(status: 500, code: .graphError, message: "the pending connection names no WhatsApp number")
        }
        // Claimed by another business meanwhile: refused before Meta is asked anything.
        do {
            if let owner = try await directory.route(identifier: phoneNumberId)?.tenant, owner.businessId != pending.tenant.businessId {
                throw Failure(status: 409, code: .alreadyConnected, message: "this WhatsApp number is connected to another business")
            }
        } catch let failure as Failure {
            throw failure
        } catch {
            throw Failure(status: 503, code: .storeUnavailable, message: "the connection could not be checked")
        }
        try await succeed(
            graph, "POST", "\(wabaId)/subscribed_apps", json: nil, token: pending.token, what: "subscribe the app to the WhatsApp account's webhooks")
        let pin = WhatsAppSignupHandler.pin()
        try await succeed(
            graph, "POST", "\(phoneNumberId)/register", json: JSON.dictionary(["messaging_product": "whatsapp", "pin": .string(pin)]).encoded(),
            token: pending.token, what: "register the number for the Cloud API")
        do {
            try await directory.connectWhatsApp(
                tenant: pending.tenant, phoneNumberId: phoneNumberId, wabaId: wabaId, displayPhoneNumber: pending.displayPhoneNumber, token: pending.token,
                registrationPin: pin)
        } catch {
            switch error {
            case .ownedByAnotherBusiness:
                throw Failure(status: 409, code: .alreadyConnected, message: "this WhatsApp number is connected to another business")
            case .store(let error):
                throw Failure(status: 503, code: .storeUnavailable, message: "the connection could not be stored: \(error.code.rawValue)")
            }
        }
        logger.info(
            "WhatsApp connected, as the person confirmed",
            metadata: ["businessId": "\(pending.tenant.businessId)", "wabaId": "\(wabaId)", "phoneNumberId": "\(phoneNumberId)"])
    }

    private func succeed(_ graph: GraphClient, _ method: String, _ path: String, json: [UInt8]?, token: String, what: String) async throws(Failure) {
        let answer: JSON
        do {
            answer = try await graph.call(method, path, token: token, json: json, timeout: timeout)
        } catch {
            throw Failure(status: 502, code: .graphError, message: error.inOurWords(what), detail: error.description)
        }
        guard answer["success"]?.bool == true else {
            throw Failure(status: 502, code: .graphError, message: "the Graph API did not confirm that it could \(what)")
        }
    }

    private func answer(_ outcome: Outcome, httpStatus: Int, flow: PendingConnection.Flow) -> HTTPResponse {
        ConnectFlow.answer(outcome, httpStatus: httpStatus, postConnectRedirectURI: flow == .whatsappSignup ? nil : postConnectRedirectURI)
    }
}

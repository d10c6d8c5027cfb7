import Essentials
import Foundation
import FunctionRuntime
import KeyValueStore
import Logging
import MetaConnect
import MetaGraph
import MetaMessaging
import MetaTelemetry
import MetaTenancy
import MetaWebhooks
import NIOHTTPTransport
import TestSupport
import Testing

/// Business Login for Instagram (issue 17), against the Instagram Login side of the Graph
/// stand-in and both store backends: the flow, its refusals, webhooks signed with the Instagram
/// app secret answered with the account's own token, and `refresh` keeping tokens alive.
@Suite struct InstagramLoginTests {
    typealias H = FunctionHarness
    typealias W = HandlerRulesTests

    static let appId = "990602627938098"
    static let secret = "instagram-app-secret"
    static let redirect = "https://connect.example.test/external/instagram/callback"
    static let account = InstagramLoginWorld.Account(
        userId: "2468013579", accountId: "17841499999999999", username: "bistro_nou", shortToken: "IGQshort-1", longToken: "IGQlong-1")
    static let tenant = Tenant(businessId: "B0400004", locationId: "L-ig")

    struct Setup {
        let harness: H
        let clock: TestClock
        let login: InstagramLogin
        let handler: InstagramLoginHandler
        let directory: TenantDirectory
        let ledger: MessageLedger
    }

    static func setUp(_ backend: StoreBackend = .file, codes: [String: InstagramLoginWorld.Account] = ["ig-code-1": account]) async throws -> Setup {
        let harness = try await H.make(backend)
        await harness.graph.configure(InstagramLoginWorld(appId: appId, appSecret: secret, redirectURI: redirect, codes: codes))
        let clock = harness.clock
        let login = InstagramLogin(
            appId: appId, appSecret: secret, redirectURI: redirect, stateSecret: "local-state-secret", authorizeBaseURL: "https://www.instagram.com",
            apiBaseURL: harness.graph.baseURL, graphBaseURL: harness.graph.baseURL)
        let directory = TenantDirectory(store: harness.store, tables: harness.tables)
        let ledger = MessageLedger(store: harness.store, table: harness.tables.processedMessages, clock: clock.clock)
        let handler = InstagramLoginHandler(login: login, transport: NIOHTTPTransport(), directory: directory, ledger: ledger, clock: clock.clock)
        return Setup(harness: harness, clock: clock, login: login, handler: handler, directory: directory, ledger: ledger)
    }

    static func logger() -> Logger { Logger(label: "test") }

    static func get(_ path: String, _ query: [String: String]) -> HTTPRequest {
        HTTPRequest(method: "GET", path: path, query: query.mapValues { [$0] })
    }

    static func json(_ response: HTTPResponse) -> [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(response.body.utf8))) as? [String: Any] ?? [:]
    }

    /// The state of a fresh authorization URL for the tenant.
    static func state(_ setup: Setup, tenant: Tenant = tenant) throws -> String {
        let response = try InstagramLoginHandler.authURL(
            get(InstagramLoginHandler.authURLPath, ["businessId": tenant.businessId, "locationId": tenant.locationId]), login: setup.login,
            now: setup.clock.now, logger: logger())
        let text = try #require(json(response)["url"] as? String)
        let url = try #require(URLComponents(string: text))
        return try #require(url.queryItems?.first { $0.name == "state" }?.value)
    }

    static func callback(_ setup: Setup, _ query: [String: String]) async -> (Int, [String: Any], String) {
        let response = await setup.handler.handle(get(InstagramLoginHandler.callbackPath, query), logger: logger())
        return (response.status, json(response), response.body)
    }

    /// The person's answer on a consent page, posted from it.
    static func answer(_ setup: Setup, page: String, decision: String = "confirm") async -> (Int, [String: Any], String) {
        let nonce = TestEvents.consentNonce(in: page) ?? ""
        let request = HTTPRequest(
            method: "POST", path: ConsentHandler.confirmPath,
            headers: HTTPHeaders([("Host", "connect.example.test"), ("Origin", "https://connect.example.test")]),
            body: Array("consent=\(nonce)&decision=\(decision)".utf8))
        let response = await setup.handler.consent.handle(request, logger: logger())
        return (response.status, json(response), response.body)
    }

    /// The callback, then "Connect" on its consent page.
    static func connect(_ setup: Setup, _ query: [String: String]) async -> (Int, [String: Any], String) {
        let page = await callback(setup, query)
        guard page.0 == 200, TestEvents.consentNonce(in: page.2) != nil else { return page }
        return await answer(setup, page: page.2)
    }

    // MARK: The flow

    @Test(arguments: StoreBackend.allCases)
    func aBusinessWithOnlyAnInstagramAccountConnects(_ backend: StoreBackend) async throws {
        let setup = try await Self.setUp(backend)
        let response = try InstagramLoginHandler.authURL(
            Self.get(InstagramLoginHandler.authURLPath, ["businessId": Self.tenant.businessId, "locationId": Self.tenant.locationId]),
            login: setup.login, now: setup.clock.now, logger: Self.logger())
        let text = try #require(Self.json(response)["url"] as? String)
        let url = try #require(URLComponents(string: text))
        #expect(url.host == "www.instagram.com")
        #expect(url.path == "/oauth/authorize")
        let query = Dictionary(uniqueKeysWithValues: (url.queryItems ?? []).map { ($0.name, $0.value ?? "") })
        #expect(query["client_id"] == Self.appId)
        #expect(query["redirect_uri"] == Self.redirect)
        #expect(query["response_type"] == "code")
        #expect(query["scope"] == "instagram_business_basic,instagram_business_manage_messages,instagram_business_manage_comments")
        let state = try #require(query["state"])

        // Nothing is connected before the person confirms, on a page naming the account.
        let page = await Self.callback(setup, ["state": state, "code": "ig-code-1#_"])
        #expect(page.0 == 200)
        #expect(page.2.contains("the Instagram account @bistro_nou"))
        #expect(!page.2.contains("IGQ"))
        #expect(try await setup.directory.route(identifier: Self.account.accountId) == nil)
        #expect(await setup.harness.graph.subscription(of: Self.account.accountId) == nil)
        let (status, body, raw) = await Self.answer(setup, page: page.2)
        #expect(status == 200, "\(raw)")
        #expect(body["status"] as? String == "connected")
        #expect(body["instagramAccountId"] as? String == Self.account.accountId)
        #expect(body["instagramUsername"] as? String == "bistro_nou")
        #expect(!raw.contains("IGQ"))

        // Stored: the account's own token with its expiry, no Page, its id claimed.
        let item = try #require(
            try await setup.harness.store.get(
                setup.harness.tables.credentials, key: ["businessId": .s(Self.tenant.businessId), "serviceType": .s("meta#L-ig")]))
        #expect(item["loginType"]?.string == "instagram")
        let now = setup.clock.now
        #expect(item["tokenExpiresAt"]?.int == now + 5_183_944)
        #expect(item["tokenIssuedAt"]?.int == now)
        #expect(item["credentials"]?.map?["accessToken"]?.string == Self.account.longToken)
        #expect(item["credentials"]?.map?["pageId"] == nil)
        let route = try await setup.directory.route(identifier: Self.account.accountId)
        #expect(route?.tenant == Self.tenant)
        let connection = try #require(try await setup.directory.credentials(tenant: Self.tenant))
        #expect(connection.usesInstagramLogin)
        #expect(connection.sendingAccount(for: .instagram) == Self.account.accountId)
        #expect(connection.sendingAccount(for: .messenger) == nil)
        // Subscribed to webhooks, through graph.instagram.com calls that carry no appsecret_proof.
        #expect(
            await setup.harness.graph.subscription(of: Self.account.accountId) == [
                "messages", "messaging_postbacks", "message_reactions", "messaging_seen", "comments", "live_comments",
            ])
        let calls = await setup.harness.graph.calls
        #expect(calls.map(\.path) == ["/oauth/access_token", "/access_token", "/v25.0/me", "/v25.0/me/subscribed_apps"])
        #expect(calls.allSatisfy { $0.query["appsecret_proof"] == nil })
        #expect(String(decoding: calls[0].rawBody, as: UTF8.self).contains("grant_type=authorization_code"))
        await setup.harness.shutdown()
    }

    // MARK: Leaving (issue 38)

    /// A connection made through the whole Instagram Login flow.
    static func connected(_ backend: StoreBackend) async throws -> (Setup, ConnectionsHandler) {
        let setup = try await Self.setUp(backend)
        let (status, _, raw) = await Self.connect(setup, ["state": try Self.state(setup), "code": "ig-code-1"])
        #expect(status == 200, "\(raw)")
        var handler = ConnectionsHandler(
            directory: setup.directory, ledger: setup.ledger,
            graph: GraphClient(transport: NIOHTTPTransport(), baseURL: setup.harness.graph.baseURL, appSecret: H.appSecret),
            appSecret: H.appSecret, publicBaseURL: "https://api.example.com", clock: setup.clock.clock)
        handler.instagramAppSecret = Self.secret
        return (setup, handler)
    }

    /// Instagram's deauthorize request (the account's owner removed the app), signed with the
    /// Instagram app's secret and naming the person by the id the login gave: the connection
    /// becomes inactive, its token gone, its account free; the same request signed with
    /// nobody's secret changes nothing.
    @Test(arguments: StoreBackend.allCases)
    func instagramsDeauthorizeLeavesTheConnectionInactive(_ backend: StoreBackend) async throws {
        let (setup, handler) = try await Self.connected(backend)
        let issued = setup.clock.now
        let forged = LifecycleTests.signedRequest(userId: Self.account.userId, issuedAt: issued, secret: "nobody's secret")
        await #expect(throws: RequestRefused.self) {
            _ = try await handler.handle(LifecycleTests.callback("/external/meta/deauthorize", signedRequest: forged), logger: Self.logger())
        }
        #expect(try await setup.directory.credentials(tenant: Self.tenant)?.isActive == true)

        let signed = LifecycleTests.signedRequest(userId: Self.account.userId, issuedAt: issued, secret: Self.secret)
        let answer = try await handler.handle(LifecycleTests.callback("/external/meta/deauthorize", signedRequest: signed), logger: Self.logger())
        #expect(answer.status == 200)
        #expect(Self.json(answer)["connections"] as? String == "1")
        #expect(try await setup.directory.credentials(tenant: Self.tenant) == nil)
        let item = try #require(
            try await setup.harness.store.get(
                setup.harness.tables.credentials, key: ["businessId": .s(Self.tenant.businessId), "serviceType": .s("meta#L-ig")]))
        #expect(item["inactiveReason"]?.string == "deauthorized")
        #expect(item["credentials"]?.map?["accessToken"] == nil)
        #expect(item["connectedBy"] == nil)
        #expect(try await setup.directory.route(identifier: Self.account.accountId) == nil)
        await setup.harness.shutdown()
    }

    /// Instagram's data-deletion request: the connection is deleted and the status page says so.
    @Test(arguments: StoreBackend.allCases)
    func instagramsDataDeletionDeletesTheConnection(_ backend: StoreBackend) async throws {
        let (setup, handler) = try await Self.connected(backend)
        let signed = LifecycleTests.signedRequest(userId: Self.account.userId, issuedAt: setup.clock.now, secret: Self.secret)
        let answer = try await handler.handle(LifecycleTests.callback("/external/meta/data-deletion", signedRequest: signed), logger: Self.logger())
        #expect(answer.status == 200)
        let code = try #require(Self.json(answer)["confirmation_code"] as? String)
        #expect(try await setup.directory.connections(businessId: Self.tenant.businessId).isEmpty)
        #expect(try await setup.directory.connectionsMade(by: "instagram:\(Self.account.userId)").isEmpty)
        let status = try await handler.handle(
            HTTPRequest(method: "GET", path: "/external/meta/data-deletion/status", query: ["code": [code]]), logger: Self.logger())
        #expect(status.body.contains("connection you made (1)"))
        await setup.harness.shutdown()
    }

    /// Disconnecting an Instagram-Login location calls nothing Meta does not document, and
    /// says what stays at Meta.
    @Test func disconnectingAnInstagramLoginLocationSaysWhatStaysAtMeta() async throws {
        let (setup, handler) = try await Self.connected(.file)
        let before = await setup.harness.graph.calls.count
        let answer = try await handler.handle(
            HTTPRequest(method: "DELETE", path: "/external/meta/connections/\(Self.tenant.businessId)/\(Self.tenant.locationId)"), logger: Self.logger())
        #expect(Self.json(answer)["status"] as? String == "disconnected")
        let notUndone = try #require(Self.json(answer)["notUndone"] as? [String])
        #expect(notUndone.count == 1)
        #expect(notUndone.first?.contains(Self.account.accountId) == true)
        #expect(await setup.harness.graph.calls.count == before)
        #expect(try await setup.directory.connectionsMade(by: "instagram:\(Self.account.userId)").isEmpty)
        await setup.harness.shutdown()
    }

    @Test func statesThatAreNotGoodAreRefusedBeforeAnyCall() async throws {
        let setup = try await Self.setUp()
        let good = try Self.state(setup)
        // Altered.
        let tampered = String(good.dropLast(2)) + (good.hasSuffix("AA") ? "BB" : "AA")
        #expect(await Self.callback(setup, ["state": tampered, "code": "ig-code-1"]).1["error"] as? String == "tampered_state")
        // A Facebook Login state (signed under the other flow's key) is not one of ours.
        let facebook = OAuthState(
            businessId: "B0400004", locationId: "L-ig", pageId: nil, redirectUri: Self.redirect, nonce: "n", expiresAt: Int64.max / 2
        ).signed(secret: "local-state-secret")
        #expect(await Self.callback(setup, ["state": facebook, "code": "ig-code-1"]).1["error"] as? String == "tampered_state")
        #expect(await setup.harness.graph.calls.isEmpty)
        // Expired.
        setup.clock.advance(601)
        let (expiredStatus, expired, _) = await Self.callback(setup, ["state": good, "code": "ig-code-1"])
        #expect(expiredStatus == 400)
        #expect(expired["error"] as? String == "expired_state")
        #expect(await setup.harness.graph.calls.isEmpty)
        // Used once, then replayed.
        let fresh = try Self.state(setup)
        #expect(await Self.connect(setup, ["state": fresh, "code": "ig-code-1"]).1["status"] as? String == "connected")
        let (replayStatus, replay, _) = await Self.callback(setup, ["state": fresh, "code": "ig-code-1"])
        #expect(replayStatus == 400)
        #expect(replay["error"] as? String == "state_already_used")
        // A code Instagram does not know.
        let (badStatus, bad, badRaw) = await Self.callback(setup, ["state": try Self.state(setup), "code": "not-a-code"])
        #expect(badStatus == 400)
        #expect(bad["error"] as? String == "code_exchange_failed")
        #expect(!badRaw.contains(Self.secret))
        await setup.harness.shutdown()
    }

    @Test func aDeclinedDialogConnectsNothing() async throws {
        let setup = try await Self.setUp()
        let (status, body, _) = await Self.callback(
            setup,
            ["state": try Self.state(setup), "error": "access_denied", "error_reason": "user_denied", "error_description": "The user denied your request."])
        #expect(status == 200)
        #expect(body["status"] as? String == "denied")
        #expect(body["error"] as? String == "access_denied")
        #expect(await setup.harness.graph.calls.isEmpty)
        #expect(try await setup.directory.credentials(tenant: Self.tenant) == nil)
        await setup.harness.shutdown()
    }

    @Test func anAccountAnotherBusinessHoldsIsNotTakenOver() async throws {
        let setup = try await Self.setUp()
        let other = Tenant(businessId: "B0999999", locationId: "L1")
        #expect(await Self.connect(setup, ["state": try Self.state(setup, tenant: other), "code": "ig-code-1"]).1["status"] as? String == "connected")
        let (status, body, _) = await Self.connect(setup, ["state": try Self.state(setup), "code": "ig-code-1"])
        #expect(status == 409)
        #expect(body["error"] as? String == "already_connected")
        #expect(try await setup.directory.route(identifier: Self.account.accountId)?.tenant == other)
        #expect(try await setup.directory.credentials(tenant: Self.tenant) == nil)
        await setup.harness.shutdown()
    }

    // MARK: Webhooks and replies

    @Test func aWebhookSignedWithTheInstagramSecretIsAnsweredWithTheAccountsOwnToken() async throws {
        let setup = try await Self.setUp()
        #expect(await Self.connect(setup, ["state": try Self.state(setup), "code": "ig-code-1"]).1["status"] as? String == "connected")
        let body = H.messaging(
            account: Self.account.accountId,
            events: [H.textEvent(mid: "m_iglogin_1", text: "Bună! Aveți masă liberă?", sender: "7300000000000001", recipient: Self.account.accountId)])
        let environment = [
            "INSTAGRAM_APP_SECRET": Self.secret, "INSTAGRAM_GRAPH_BASE_URL": setup.harness.graph.baseURL, "SENDER_ACTIONS": "off",
        ]
        let answered = try await setup.harness.run("receive", H.webhookEvent(body, secret: Self.secret), extra: environment)
        #expect(answered.statusCode == 200, "\(answered.stderr)")
        #expect(answered.bodyJSON?["answered"] as? Int == 1)
        let reply = try #require(await setup.harness.graph.messages.last)
        #expect(reply.path == "/v25.0/\(Self.account.accountId)/messages")
        #expect(reply.token == Self.account.longToken)
        #expect(reply.query["appsecret_proof"] == nil)
        #expect((reply.body?["recipient"] as? [String: String])?["id"] == "7300000000000001")
        #expect(!answered.stderr.contains(Self.account.longToken))

        // Signed with neither secret: refused, nothing sent.
        let forged = try await setup.harness.run("receive", H.webhookEvent(body, secret: "some-other-secret"), extra: environment)
        #expect(forged.statusCode == 401)
        // Without INSTAGRAM_APP_SECRET configured, the Instagram app's signature is not enough.
        let unconfigured = try await setup.harness.run("receive", H.webhookEvent(body, secret: Self.secret))
        #expect(unconfigured.statusCode == 401)
        #expect(await setup.harness.graph.messages.count == 1)
        await setup.harness.shutdown()
    }

    // MARK: Keeping tokens alive

    static func connect(_ setup: Setup, location: String, account: String, token: String, issuedAgo: Int64, expiresIn: Int64) async throws {
        let now = setup.clock.now
        await setup.harness.graph.allowInstagram(token: token, account: account)
        try await setup.directory.connectInstagramLogin(
            tenant: Tenant(businessId: "B0500005", locationId: location), instagramAccountId: account, username: nil, token: token,
            issuedAt: now - issuedAgo, expiresAt: now + expiresIn)
    }

    static func refresher(_ setup: Setup) -> RefreshHandler {
        RefreshHandler(
            directory: setup.directory, ledger: setup.ledger, login: setup.login, transport: NIOHTTPTransport(), clock: setup.clock.clock)
    }

    static func connection(_ setup: Setup, _ location: String) async throws -> TenantCredentials? {
        try await setup.directory.credentials(tenant: Tenant(businessId: "B0500005", locationId: location))
    }

    @Test(arguments: StoreBackend.allCases)
    func refreshRenewsOnlyWhatIsDueAndRetiresWhatExpired(_ backend: StoreBackend) async throws {
        let setup = try await Self.setUp(backend)
        let day: Int64 = 24 * 3600
        try await Self.connect(setup, location: "due", account: "1784100000000001", token: "tok-due", issuedAgo: 55 * day, expiresIn: 5 * day)
        try await Self.connect(setup, location: "fresh", account: "1784100000000002", token: "tok-fresh", issuedAgo: 30 * day, expiresIn: 30 * day)
        try await Self.connect(setup, location: "young", account: "1784100000000003", token: "tok-young", issuedAgo: 3600, expiresIn: 5 * day)
        try await Self.connect(setup, location: "gone", account: "1784100000000004", token: "tok-gone", issuedAgo: 61 * day, expiresIn: -day)
        try await Self.connect(setup, location: "revoked", account: "1784100000000005", token: "tok-revoked", issuedAgo: 55 * day, expiresIn: 5 * day)
        await setup.harness.graph.describe(token: "tok-revoked", .expired(at: setup.clock.now - 8 * 24 * 3600))

        let events = ConversationEvents()
        let report = try await Self.refresher(setup).run(deadline: .now + .seconds(60), logger: Self.logger(), events: events)
        #expect(report.refreshed == 1)
        #expect(report.expired == 2)
        // The conversation log hears of the two connections that left.
        let removed = events.all.filter { $0.kind == .connectionRemoved }
        #expect(removed.compactMap(\.locationId).sorted() == ["gone", "revoked"])
        #expect(removed.allSatisfy { $0.reason == "token_expired" && $0.businessId == "B0500005" })
        #expect(report.failed == 0)
        #expect(report.complete)
        // The seed's Facebook connection and the two not due: skipped.
        #expect(report.skipped == 3)
        let now = setup.clock.now
        let due = try #require(try await Self.connection(setup, "due"))
        #expect(due.accessToken != "tok-due")
        #expect(due.tokenExpiresAt == now + 5_183_944)
        #expect(due.tokenIssuedAt == now)
        #expect(due.isActive)
        #expect(try await Self.connection(setup, "fresh")?.accessToken == "tok-fresh")
        #expect(try await Self.connection(setup, "young")?.accessToken == "tok-young")
        for location in ["gone", "revoked"] {
            let retired = try #require(try await Self.connection(setup, location))
            #expect(!retired.isActive)
            #expect(retired.inactiveReason == "token_expired")
        }
        // Only the due and the revoked ones were asked of Instagram.
        let refreshCalls = await setup.harness.graph.calls.filter { $0.path == "/refresh_access_token" }
        #expect(refreshCalls.compactMap { $0.query["access_token"] }.sorted() == ["tok-due", "tok-revoked"])
        // The connection status says so, and shows the renewed expiry.
        let event: [String: Any] = [
            "version": "2.0", "rawPath": "/external/meta/connections", "rawQueryString": "businessId=B0500005",
            "queryStringParameters": ["businessId": "B0500005"], "requestContext": ["http": ["method": "GET", "path": "/external/meta/connections"]],
        ]
        let status = try await setup.harness.run("connections", Array(try JSONSerialization.data(withJSONObject: event)))
        #expect(status.statusCode == 200, "\(status.stdout)")
        let connections = try #require(status.bodyJSON?["connections"] as? [[String: Any]])
        let byLocation = Dictionary(uniqueKeysWithValues: connections.compactMap { item in (item["locationId"] as? String).map { ($0, item) } })
        #expect(byLocation["gone"]?["inactiveReason"] as? String == "token_expired")
        #expect((byLocation["due"]?["token"] as? [String: Any])?["expiresAt"] as? String == ISO8601.format(epochSeconds: now + 5_183_944))
        #expect((byLocation["due"]?["token"] as? [String: Any])?["valid"] as? Bool == true)
        await setup.harness.shutdown()
    }

    @Test func aGraphFailureLeavesTheTokenForTheNextRun() async throws {
        let setup = try await Self.setUp()
        try await Self.connect(setup, location: "due", account: "1784100000000001", token: "tok-due", issuedAgo: 55 * 86400, expiresIn: 5 * 86400)
        await setup.harness.graph.script(
            [GraphStandIn.error(status: 500, code: 2, message: "Service temporarily unavailable", transient: true)], pathSuffix: "/refresh_access_token")
        let first = try await Self.refresher(setup).run(deadline: .now + .seconds(60), logger: Self.logger())
        #expect(first.failed == 1)
        #expect(first.refreshed == 0)
        let kept = try #require(try await Self.connection(setup, "due"))
        #expect(kept.accessToken == "tok-due")
        #expect(kept.isActive)
        let second = try await Self.refresher(setup).run(deadline: .now + .seconds(60), logger: Self.logger())
        #expect(second.refreshed == 1)
        await setup.harness.shutdown()
    }

    @Test func aRunReadsABoundedNumberOfPagesAndTheNextGoesOn() async throws {
        let setup = try await Self.setUp()
        for index in 1...5 {
            try await Self.connect(
                setup, location: "l\(index)", account: "17841000000000\(index)", token: "tok-\(index)", issuedAgo: 55 * 86400, expiresIn: 5 * 86400)
        }
        var refresher = Self.refresher(setup)
        refresher.pageSize = 2
        refresher.maxPages = 1
        var refreshed = 0
        var runs = 0
        var complete = false
        while !complete, runs < 10 {
            let report = try await refresher.run(deadline: .now + .seconds(60), logger: Self.logger())
            refreshed += report.refreshed
            complete = report.complete
            runs += 1
            #expect(report.scanned <= 2)
        }
        // Six connections (the seed's too), two per run.
        #expect(runs == 3)
        #expect(refreshed == 5)
        await setup.harness.shutdown()
    }

    @Test func theRefreshFunctionAnswersTheScheduledEvent() async throws {
        let setup = try await Self.setUp()
        let result = try await setup.harness.run(
            "refresh", TestEvents.load("refresh-schedule.json"), extra: ["INSTAGRAM_GRAPH_BASE_URL": setup.harness.graph.baseURL])
        #expect(result.exitCode == 0, "\(result.stderr)")
        #expect(result.json?["complete"] as? Bool == true)
        #expect(result.json?["scanned"] as? Int == 1)
        let refused = try await setup.harness.run("refresh", Array("[1,2]".utf8))
        #expect(refused.exitCode == 1)
        await setup.harness.shutdown()
    }

    @Test func theConnectPageOffersInstagramLoginWhenConfigured() async throws {
        let setup = try await Self.setUp()
        let config = OAuthConfig(
            appId: "100000000000001", redirectURI: "https://connect.example.test/external/meta/callback", stateSecret: "local-state-secret")
        let page = ConnectPageHandler(config: config, directory: setup.directory, instagram: setup.login, clock: setup.clock.clock)
        let link = config.connectURL(businessId: Self.tenant.businessId, locationId: Self.tenant.locationId, now: setup.clock.now)
        let token = try #require(URLComponents(string: link)?.queryItems?.first { $0.name == "token" }?.value)
        let response = await page.handle(Self.get(ConnectPageHandler.path, ["token": token]), logger: Self.logger())
        #expect(response.status == 200)
        #expect(response.body.contains(#"id="connect-instagram""#))
        #expect(response.body.contains("https://www.instagram.com/oauth/authorize?client_id=\(Self.appId)"))
        let without = await ConnectPageHandler(config: config, directory: setup.directory, clock: setup.clock.clock)
            .handle(Self.get(ConnectPageHandler.path, ["token": token]), logger: Self.logger())
        #expect(!without.body.contains("connect-instagram"))
        await setup.harness.shutdown()
    }
}

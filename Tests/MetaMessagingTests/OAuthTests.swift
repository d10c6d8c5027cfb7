import Foundation
import KeyValueStore
import MetaConnect
import MetaMessaging
import MetaWebhooks
import TestSupport
import Testing

/// `auth-url` and `oauth-callback` as processes, against the Graph stand-in and both backends.
@Suite struct OAuthTests {
    typealias H = FunctionHarness
    static let appId = "100000000000001"
    static let redirect = "http://localhost:3003/external/meta/callback"
    static let stateSecret = "local-state-secret"

    static let pages: [OAuthWorld.Page] = [
        .init(id: "201", name: "No Instagram Cafe", token: "page-token-201", instagramAccountId: nil),
        .init(id: "202", name: "Bistro", token: "page-token-202", instagramAccountId: "17841400000000202", instagramUsername: "bistro.ig"),
        .init(id: "203", name: "Bakery", token: "page-token-203", instagramAccountId: "17841400000000203"),
    ]

    static func world(pages: [OAuthWorld.Page] = pages) -> OAuthWorld {
        OAuthWorld(
            appId: appId, redirectURI: redirect,
            codes: [
                "good-code": (short: "short-user-token", long: "long-user-token", pages: pages),
                "second-code": (
                    short: "short-user-token-2", long: "long-user-token-2",
                    pages: pages.map { .init(id: $0.id, name: $0.name, token: $0.token + "-renewed", instagramAccountId: $0.instagramAccountId) }
                ),
            ])
    }

    static func oauthEnvironment(_ harness: H, extra: [String: String] = [:]) -> [String: String] {
        harness.environment.merging([
            "META_APP_ID": appId, "META_REDIRECT_URI": redirect, "OAUTH_STATE_SECRET": stateSecret,
            "META_ALLOWED_REDIRECT_URIS": "https://app.example.com/meta/done, https://admin.example.com/cb",
        ]) { $1 }.merging(extra) { $1 }
    }

    static func get(_ path: String, _ query: [String: String]) -> [UInt8] { TestEvents.restGET(path: path, query: query) }

    /// Runs auth-url and returns the state it signed.
    static func state(_ harness: H, query: [String: String] = ["businessId": "B0100001", "locationId": "L0100001"]) async throws -> String {
        let result = try await Executables.run("auth-url", environment: oauthEnvironment(harness), stdin: get("/external/meta/auth-url", query))
        let url = try #require(URLComponents(string: result.bodyJSON?["url"] as? String ?? ""))
        return try #require(url.queryItems?.first { $0.name == "state" }?.value)
    }

    static func callback(_ harness: H, _ query: [String: String], extra: [String: String] = [:]) async throws -> ProcessResult {
        try await Executables.run("oauth-callback", environment: oauthEnvironment(harness, extra: extra), stdin: get("/external/meta/callback", query))
    }

    /// The person's answer on the consent page a callback answered.
    static func answer(_ harness: H, _ page: ProcessResult, decision: String = "confirm", extra: [String: String] = [:]) async throws -> ProcessResult {
        let nonce = try #require(TestEvents.consentNonce(in: page.body), "no consent page: \(page.body)")
        return try await Executables.run(
            "oauth-callback", environment: oauthEnvironment(harness, extra: extra),
            stdin: TestEvents.formPOST(path: "/external/meta/connect/confirm", form: [("consent", nonce), ("decision", decision)]))
    }

    /// The callback, then the person's "Connect" on its consent page: the connection's outcome.
    static func connect(_ harness: H, _ query: [String: String], extra: [String: String] = [:]) async throws -> ProcessResult {
        let page = try await callback(harness, query, extra: extra)
        guard page.statusCode == 200, TestEvents.consentNonce(in: page.body) != nil else { return page }
        return try await answer(harness, page, extra: extra)
    }

    // MARK: auth-url

    @Test func authURLBuildsTheLoginDialogWithASignedState() async throws {
        let harness = try await H.make(.file)
        let result = try await Executables.run("auth-url", environment: Self.oauthEnvironment(harness), stdin: TestEvents.load("auth-url.json"))
        #expect(result.exitCode == 0)
        #expect(result.statusCode == 200)
        let body = try #require(result.bodyJSON)
        #expect(body["clientId"] as? String == Self.appId)
        #expect(body["redirectUri"] as? String == Self.redirect)
        let url = try #require(URLComponents(string: body["url"] as? String ?? ""))
        #expect(url.scheme == "https")
        #expect(url.host == "www.facebook.com")
        #expect(url.path == "/v25.0/dialog/oauth")
        let items = Dictionary(uniqueKeysWithValues: (url.queryItems ?? []).map { ($0.name, $0.value ?? "") })
        #expect(items["client_id"] == Self.appId)
        #expect(items["redirect_uri"] == Self.redirect)
        #expect(items["scope"] == OAuthConfig.defaultScopes)
        #expect(OAuthConfig.defaultScopes.hasPrefix("pages_show_list,pages_messaging,pages_manage_metadata,instagram_basic,instagram_manage_messages,"))
        #expect(items["response_type"] == "code")
        let state = try OAuthState.verify(try #require(items["state"]), secret: Self.stateSecret, now: Int64(Date().timeIntervalSince1970))
        #expect(state.businessId == "B0100001")
        #expect(state.locationId == "L0100001")
        #expect(state.redirectUri == Self.redirect)
        #expect(state.nonce.count == 32)
        let lifetime = state.expiresAt - Int64(Date().timeIntervalSince1970)
        #expect(lifetime > 500 && lifetime <= 600)
        #expect(!result.stderr.contains(Self.stateSecret))
        await harness.shutdown()
    }

    @Test func authURLValidatesItsInput() async throws {
        let harness = try await H.make(.file)
        let cases: [([String: String], Int, String?)] = [
            (["locationId": "L1"], 400, "invalid_business_id"),
            (["businessId": "B1"], 400, "invalid_location_id"),
            (["businessId": "B1 <script>", "locationId": "L1"], 400, "invalid_business_id"),
            (["businessId": "B1", "locationId": "L1", "redirectUri": "https://evil.example/steal"], 400, "redirect_uri_not_allowed"),
            (["businessId": "B1", "locationId": "L1", "pageId": "abc"], 400, "invalid_page_id"),
            (["businessId": "B1", "locationId": "L1", "redirectUri": "https://app.example.com/meta/done", "pageId": "202"], 200, nil),
        ]
        for (query, status, code) in cases {
            let result = try await Executables.run("auth-url", environment: Self.oauthEnvironment(harness), stdin: Self.get("/external/meta/auth-url", query))
            #expect(result.statusCode == status, "\(query)")
            #expect(result.bodyJSON?["error"] as? String == code, "\(query)")
        }
        let missing = try await Executables.run(
            "auth-url", environment: ["META_APP_ID": "1", "META_REDIRECT_URI": Self.redirect], stdin: TestEvents.load("auth-url.json"))
        #expect(missing.exitCode == 2)
        #expect(missing.stderr.contains("OAUTH_STATE_SECRET"))
        await harness.shutdown()
    }

    // MARK: oauth-callback

    @Test(arguments: StoreBackend.allCases)
    func theWholeFlowConnectsTheFirstPageWithInstagram(_ backend: StoreBackend) async throws {
        let harness = try await H.make(backend, seedTenant: false)
        await harness.graph.configure(Self.world())
        let state = try await Self.state(
            harness, query: ["businessId": "B0100001", "locationId": "L0100001", "businessName": "Salon Ana", "locationName": "Cluj – centru"])
        // The callback connects nothing: it asks the person, naming the Page, the Instagram
        // account and the business and location they would join.
        let page = try await Self.callback(harness, ["code": "good-code", "state": state])
        #expect(page.statusCode == 200, "\(page.body)")
        #expect(page.body.contains("the Facebook Page “Bistro”"))
        #expect(page.body.contains("the Instagram account @bistro.ig"))
        #expect(page.body.contains("Salon Ana"))
        #expect(page.body.contains("Cluj – centru"))
        #expect(try await harness.credentialsItem() == nil)
        #expect(try await harness.store.get(harness.tables.identifiers, key: ["identifierId": .s("202")]) == nil)
        #expect(await harness.graph.calls.allSatisfy { !$0.path.hasSuffix("subscribed_apps") })

        let result = try await Self.answer(harness, page)
        #expect(result.exitCode == 0)
        #expect(result.statusCode == 200, "\(result.body)")
        let body = try #require(result.bodyJSON)
        #expect(body["status"] as? String == "connected")
        #expect(body["pageId"] as? String == "202")
        #expect(body["instagramAccountId"] as? String == "17841400000000202")
        for run in [page, result] {
            for secret in ["good-code", "short-user-token", "long-user-token", "page-token-202", H.appSecret] {
                #expect(!run.stdout.contains(secret))
                #expect(!run.stderr.contains(secret))
            }
        }
        // Answered once: the same answer again is refused, and nothing changes.
        let replayed = try await Self.answer(harness, page)
        #expect(replayed.statusCode == 410)

        let credentials = try #require(try await harness.credentialsItem())
        #expect(credentials["credentials"]?.map?["accessToken"] == .s("page-token-202"))
        #expect(credentials["credentials"]?.map?["pageId"] == .s("202"))
        #expect(credentials["credentials"]?.map?["instagramAccountId"] == .s("17841400000000202"))
        #expect(credentials["isActive"] == .bool(true))
        #expect(credentials["createdAt"]?.string?.hasSuffix("Z") == true)
        #expect(credentials["updatedAt"] != nil)
        for (identifier, type) in [("202", "page"), ("17841400000000202", "instagram_account")] {
            let item = try await harness.store.get(harness.tables.identifiers, key: ["identifierId": .s(identifier)])
            #expect(item?["businessId"] == .s("B0100001"))
            #expect(item?["locationId"] == .s("L0100001"))
            #expect(item?["identifierType"] == .s(type))
            #expect(item?["businessLocationId"] == .s("B0100001#L0100001"))
        }

        let calls = await harness.graph.calls
        #expect(calls.filter { $0.path == "/v25.0/me/accounts" }.count == 2, "both pages of /me/accounts")
        let exchange = try #require(calls.first { $0.path == "/v25.0/oauth/access_token" && $0.query["code"] != nil })
        #expect(exchange.query["client_id"] == Self.appId)
        #expect(exchange.query["redirect_uri"] == Self.redirect)
        #expect(calls.contains { $0.query["grant_type"] == "fb_exchange_token" && $0.query["fb_exchange_token"] == "short-user-token" })
        let subscription = try #require(calls.first { $0.path == "/v25.0/202/subscribed_apps" })
        #expect(subscription.method == "POST")
        #expect(subscription.token == "page-token-202")
        #expect(subscription.query["subscribed_fields"] == "messages,messaging_postbacks,message_echoes,message_reactions,messaging_handovers,feed")
        #expect(calls.filter { $0.token != nil }.allSatisfy { $0.query["appsecret_proof"]?.count == 64 })

        // receive now routes a webhook for the connected Page with the stored token.
        await harness.graph.allow(token: "page-token-202", accounts: ["202"])
        let webhook = H.webhookEvent(
            H.messaging(account: "17841400000000202", events: [H.textEvent(mid: "m_connected", text: "hello", recipient: "17841400000000202")]))
        let received = try await harness.run("receive", webhook)
        #expect(received.bodyJSON?["answered"] as? Int == 1)
        let reply = try #require(await harness.graph.messages.last)
        #expect(reply.path == "/v25.0/202/messages")
        #expect(reply.token == "page-token-202")
        await harness.shutdown()
    }

    /// The consent page's answer (issue 38): "Cancel" connects nothing and leaves no token in
    /// the store's files; an answer posted from another site, or with no Origin at all, is
    /// refused and leaves the question for the person; an unknown question is refused.
    @Test func aCancelledOrCrossSiteAnswerConnectsNothing() async throws {
        let harness = try await H.make(.file, seedTenant: false)
        await harness.graph.configure(Self.world())
        let page = try await Self.callback(harness, ["code": "good-code", "state": try await Self.state(harness)])
        let nonce = try #require(TestEvents.consentNonce(in: page.body))
        for origin in ["https://evil.example", nil] {
            let forged = try await Executables.run(
                "oauth-callback", environment: Self.oauthEnvironment(harness),
                stdin: TestEvents.formPOST(path: "/external/meta/connect/confirm", form: [("consent", nonce), ("decision", "confirm")], origin: origin))
            #expect(forged.statusCode == 403, "\(origin ?? "no origin")")
        }
        #expect(try await harness.credentialsItem() == nil)
        let unknown = try await Executables.run(
            "oauth-callback", environment: Self.oauthEnvironment(harness),
            stdin: TestEvents.formPOST(path: "/external/meta/connect/confirm", form: [("consent", String(repeating: "a", count: 32)), ("decision", "confirm")]))
        #expect(unknown.statusCode == 410)

        let cancelled = try await Self.answer(harness, page, decision: "cancel")
        #expect(cancelled.statusCode == 200)
        #expect(cancelled.bodyJSON?["status"] as? String == "cancelled")
        #expect(try await harness.credentialsItem() == nil)
        #expect(try await harness.store.get(harness.tables.identifiers, key: ["identifierId": .s("202")]) == nil)
        #expect(await harness.graph.calls.allSatisfy { !$0.path.hasSuffix("subscribed_apps") })
        // Nothing of the question is left in the store's files.
        let directory = try #require(harness.environment["KV_FILE_DIR"])
        for name in FileManager.default.enumerator(atPath: directory)?.compactMap({ $0 as? String }) ?? [] {
            let data = FileManager.default.contents(atPath: "\(directory)/\(name)") ?? Data()
            #expect(data.range(of: Data("page-token-202".utf8)) == nil, "\(name)")
        }
        #expect(try await Self.answer(harness, page).statusCode == 410)
        #expect(try await harness.credentialsItem() == nil)
        await harness.shutdown()
    }

    /// auth-url checks the names it is given.
    @Test func displayNamesAreCheckedAtAuthURL() async throws {
        let harness = try await H.make(.file, seedTenant: false)
        for bad in ["", "   ", String(repeating: "a", count: 81), "Salon\u{202E}anA", "Salon\u{0007}", "a\u{200B}b"]
        where !bad.trimmingCharacters(in: .whitespaces).isEmpty {
            let result = try await Executables.run(
                "auth-url", environment: Self.oauthEnvironment(harness),
                stdin: Self.get("/external/meta/auth-url", ["businessId": "B0100001", "locationId": "L0100001", "businessName": bad]))
            #expect(result.statusCode == 400, "\(bad.unicodeScalars.map(\.value))")
            #expect(result.bodyJSON?["error"] as? String == "invalid_display_name")
        }
        for good in ["Salon Ana", "Cafeneaua „Știință” – Iași", "مطعم"] {
            let result = try await Executables.run(
                "auth-url", environment: Self.oauthEnvironment(harness),
                stdin: Self.get("/external/meta/auth-url", ["businessId": "B0100001", "locationId": "L0100001", "businessName": good]))
            #expect(result.statusCode == 200, "\(good)")
        }
        await harness.shutdown()
    }

    @Test func theNamedPageIsConnectedAndAReconnectionRefreshesTheToken() async throws {
        let harness = try await H.make(.file, seedTenant: false)
        await harness.graph.configure(Self.world())
        let state = try await Self.state(harness, query: ["businessId": "B0100001", "locationId": "L0100001", "pageId": "203"])
        let first = try await Self.connect(harness, ["code": "good-code", "state": state])
        #expect(first.bodyJSON?["pageId"] as? String == "203")
        let created = try await harness.credentialsItem()?["createdAt"]

        let again = try await Self.state(harness, query: ["businessId": "B0100001", "locationId": "L0100001", "pageId": "203"])
        let second = try await Self.connect(harness, ["code": "second-code", "state": again])
        #expect(second.statusCode == 200)
        let credentials = try await harness.credentialsItem()
        #expect(credentials?["credentials"]?.map?["accessToken"] == .s("page-token-203-renewed"))
        #expect(credentials?["createdAt"] == created)
        await harness.shutdown()
    }

    @Test func noPageWithInstagramIsAClearError() async throws {
        let harness = try await H.make(.file, seedTenant: false)
        await harness.graph.configure(Self.world(pages: [Self.pages[0]]))
        let result = try await Self.callback(harness, ["code": "good-code", "state": try await Self.state(harness)])
        #expect(result.statusCode == 400)
        #expect(result.bodyJSON?["error"] as? String == "no_instagram_account")
        #expect(try await harness.credentialsItem() == nil)
        await harness.shutdown()
    }

    @Test func stateAttacksAreRefusedBeforeAnyGraphCall() async throws {
        let harness = try await H.make(.file, seedTenant: false)
        await harness.graph.configure(Self.world())
        let good = try await Self.state(harness)
        let now = Int64(Date().timeIntervalSince1970)
        let parts = good.split(separator: ".").map(String.init)

        // Altered: the payload says another business, the signature is the original one.
        let original = try OAuthState.verify(good, secret: Self.stateSecret, now: now)
        let forgedPayload = OAuthState(
            businessId: "B0999999", locationId: original.locationId, pageId: nil,
            redirectUri: original.redirectUri, nonce: original.nonce, expiresAt: original.expiresAt
        )
        .signed(secret: "guessed-secret").split(separator: ".")[0]
        let expired = OAuthState(
            businessId: "B0100001", locationId: "L0100001", pageId: nil, redirectUri: Self.redirect,
            nonce: OAuthState.randomNonce(), expiresAt: now - 1
        ).signed(secret: Self.stateSecret)
        let foreign = OAuthState(
            businessId: "B0100001", locationId: "L0100001", pageId: nil, redirectUri: "https://evil.example/cb",
            nonce: OAuthState.randomNonce(), expiresAt: now + 600
        ).signed(secret: Self.stateSecret)
        let cases: [(String, String)] = [
            ("\(forgedPayload).\(parts[1])", "tampered_state"),
            (parts[0] + "." + String(parts[1].reversed()), "tampered_state"),
            ("not-a-state", "invalid_state"),
            (expired, "expired_state"),
            (foreign, "redirect_uri_not_allowed"),
        ]
        for (state, code) in cases {
            let result = try await Self.callback(harness, ["code": "good-code", "state": state])
            #expect(result.statusCode == 400, "\(code)")
            #expect(result.bodyJSON?["error"] as? String == code)
        }
        let missing = try await Self.callback(harness, ["code": "good-code"])
        #expect(missing.statusCode == 400)
        #expect(await harness.graph.calls.isEmpty)

        // A state is good for one connection only.
        #expect(try await Self.callback(harness, ["code": "good-code", "state": good]).statusCode == 200)
        let replay = try await Self.callback(harness, ["code": "good-code", "state": good])
        #expect(replay.statusCode == 400)
        #expect(replay.bodyJSON?["error"] as? String == "state_already_used")
        await harness.shutdown()
    }

    @Test(arguments: StoreBackend.allCases)
    func aPageOfAnotherBusinessIsNotTakenOver(_ backend: StoreBackend) async throws {
        let harness = try await H.make(backend, seedTenant: false)
        await harness.graph.configure(Self.world())
        let theirs: Item = [
            "identifierId": .s("17841400000000202"), "identifierType": .s("instagram_account"), "platform": .s("instagram"),
            "businessId": .s("B0200002"), "locationId": .s("L0200002"), "businessLocationId": .s("B0200002#L0200002"),
        ]
        try await harness.store.put(harness.tables.identifiers, item: theirs)
        let result = try await Self.connect(harness, ["code": "good-code", "state": try await Self.state(harness)])
        #expect(result.statusCode == 409)
        #expect(result.bodyJSON?["error"] as? String == "already_connected")
        #expect(try await harness.store.get(harness.tables.identifiers, key: ["identifierId": .s("17841400000000202")]) == theirs)
        #expect(try await harness.store.get(harness.tables.identifiers, key: ["identifierId": .s("202")]) == nil)
        #expect(try await harness.credentialsItem() == nil)
        #expect(await harness.graph.calls.allSatisfy { !$0.path.hasSuffix("subscribed_apps") })
        await harness.shutdown()
    }

    @Test func aDeclinedDialogIsAClearResultWithoutGraphCalls() async throws {
        let harness = try await H.make(.file, seedTenant: false)
        await harness.graph.configure(Self.world())
        let state = try await Self.state(harness)
        var event = try JSONSerialization.jsonObject(with: Data(TestEvents.load("oauth-callback-denied.json"))) as? [String: Any] ?? [:]
        event["rawQueryString"] = (event["rawQueryString"] as? String ?? "").replacingOccurrences(of: "STATE", with: state)
        let result = try await Executables.run(
            "oauth-callback", environment: Self.oauthEnvironment(harness), stdin: Array(JSONSerialization.data(withJSONObject: event)))
        #expect(result.statusCode == 200)
        #expect(result.bodyJSON?["status"] as? String == "denied")
        #expect(result.bodyJSON?["error"] as? String == "access_denied")
        #expect(await harness.graph.calls.isEmpty)

        let redirected = try await Self.callback(
            harness, ["error": "access_denied", "error_reason": "user_denied", "state": try await Self.state(harness)],
            extra: ["META_POST_CONNECT_REDIRECT_URI": "https://app.example.com/meta/done"])
        #expect(redirected.statusCode == 302)
        let location = (redirected.json?["headers"] as? [String: String])?["Location"] ?? ""
        #expect(location.hasPrefix("https://app.example.com/meta/done?status=denied&error=access_denied&businessId=B0100001"))
        await harness.shutdown()
    }

    @Test func graphErrorsOnEachStep() async throws {
        let harness = try await H.make(.file, seedTenant: false)
        await harness.graph.configure(Self.world())
        let wrongCode = try await Self.callback(harness, ["code": "wrong-code", "state": try await Self.state(harness)])
        #expect(wrongCode.statusCode == 400)
        #expect(wrongCode.bodyJSON?["error"] as? String == "code_exchange_failed")
        // Our own words and Meta's trace id reach the person; Meta's text only the log.
        #expect((wrongCode.bodyJSON?["message"] as? String)?.contains("fbtrace_id AbCdEfGh123") == true)
        #expect(!wrongCode.stdout.contains("Invalid verification code format"))
        #expect(wrongCode.stderr.contains("Invalid verification code format"))
        #expect(!wrongCode.stdout.contains("wrong-code"))

        await harness.graph.script(
            [GraphStandIn.error(code: 190, subcode: 463, message: "Error validating access token: Session has expired")], pathSuffix: "/me/accounts")
        let expired = try await Self.callback(harness, ["code": "good-code", "state": try await Self.state(harness)])
        #expect(expired.statusCode == 502)
        #expect(expired.bodyJSON?["error"] as? String == "token_expired")

        await harness.graph.script([GraphStandIn.error(status: 500, code: 1, message: "An unknown error occurred")], pathSuffix: "/subscribed_apps")
        let failed = try await Self.connect(harness, ["code": "good-code", "state": try await Self.state(harness)])
        #expect(failed.statusCode == 502)
        #expect(failed.bodyJSON?["error"] as? String == "graph_error")
        await harness.shutdown()
    }

    @Test func thePostConnectRedirectCarriesTheOutcome() async throws {
        let harness = try await H.make(.file, seedTenant: false)
        await harness.graph.configure(Self.world())
        let result = try await Self.connect(
            harness, ["code": "good-code", "state": try await Self.state(harness)],
            extra: ["META_POST_CONNECT_REDIRECT_URI": "https://app.example.com/meta/done"])
        #expect(result.statusCode == 302)
        let location = try #require((result.json?["headers"] as? [String: String])?["Location"])
        #expect(
            location
                == "https://app.example.com/meta/done?status=connected&businessId=B0100001&locationId=L0100001&pageId=202&instagramAccountId=17841400000000202")
        #expect(!location.contains("token"))
        #expect(!location.contains("good-code"))
        await harness.shutdown()
    }
}

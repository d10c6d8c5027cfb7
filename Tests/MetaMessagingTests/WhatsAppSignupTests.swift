import Essentials
import Foundation
import FunctionRuntime
import KeyValueStore
import Logging
import MetaConnect
import MetaGraph
import MetaMessaging
import MetaTenancy
import MetaWebhooks
import NIOHTTPTransport
import TestSupport
import Testing

/// WhatsApp Embedded Signup, server side (issue 22): against the Graph stand-in's Tech
/// Provider exchanges, on both store backends, checking what is stored after each outcome.
@Suite struct WhatsAppSignupTests {
    typealias H = FunctionHarness
    typealias W = HandlerRulesTests

    static let appId = "100000000000001"
    static let stateSecret = "signup-state-secret"
    static let salon = Tenant(businessId: "B0400004", locationId: "L-harbour")
    static let waba = "1022900000777"
    static let phone = "1065400000777"

    static func handler(_ world: W.World) -> WhatsAppSignupHandler {
        WhatsAppSignupHandler(
            config: OAuthConfig(appId: appId, redirectURI: "https://example.com/external/meta/callback", stateSecret: stateSecret),
            appSecret: H.appSecret,
            graph: GraphClient(transport: NIOHTTPTransport(), baseURL: world.harness.graph.baseURL, appSecret: H.appSecret),
            directory: world.directory, ledger: world.ledger, clock: world.clock.clock)
    }

    static func state(_ world: W.World, tenant: Tenant = salon) -> String {
        OAuthState(
            businessId: tenant.businessId, locationId: tenant.locationId, pageId: nil, redirectUri: "https://example.com/external/meta/callback",
            // Ten minutes past both the test's clock and the file store's (the real one, for its TTL).
            nonce: OAuthState.randomNonce(), expiresAt: max(world.clock.now, WallClock.epochSeconds()) + 600
        ).signed(secret: stateSecret)
    }

    static func post(_ world: W.World, _ fields: [String: String]) async -> (Int, [String: Any]) {
        let body = Array((try? JSONSerialization.data(withJSONObject: fields)) ?? Data())
        let request = HTTPRequest(method: "POST", path: WhatsAppSignupHandler.path, headers: HTTPHeaders([("Content-Type", "application/json")]), body: body)
        let response: HTTPResponse
        do {
            response = try await handler(world).handle(request, logger: Logger(label: "test"))
        } catch {
            response = .error(error.status, code: error.code, message: error.errorMessage)
        }
        return (response.status, W.summary(response))
    }

    /// The person's answer to the signup's question, posted from the connect page (same origin).
    static func answer(_ world: W.World, _ question: [String: Any], decision: String = "confirm") async -> (Int, [String: Any]) {
        let signup = handler(world)
        let consent = ConsentHandler(
            consents: signup.consents, directory: world.directory, graph: signup.graph, instagramGraph: nil, postConnectRedirectURI: nil)
        let request = HTTPRequest(
            method: "POST", path: ConsentHandler.confirmPath,
            headers: HTTPHeaders([("Host", "connect.example.test"), ("Origin", "null"), ("Sec-Fetch-Site", "same-origin")]),
            body: Array("consent=\(question["consent"] as? String ?? "")&decision=\(decision)".utf8))
        let response = await consent.handle(request, logger: Logger(label: "test"))
        return (response.status, W.summary(response))
    }

    /// The signup's post, then the person's "Connect".
    static func signup(_ world: W.World, _ fields: [String: String]) async -> (Int, [String: Any]) {
        let (status, question) = await post(world, fields)
        guard status == 200, question["status"] as? String == "confirm" else { return (status, question) }
        return await answer(world, question)
    }

    static func world(_ backend: StoreBackend) async throws -> W.World {
        let world = try await W.world(backend: backend)
        await world.harness.graph.configure(
            SignupWorld(
                appId: appId,
                codes: [
                    // The number the signup chose is on the third page of its WABA's numbers.
                    "es-code-ok": .init(
                        businessToken: "biz-token-777", grantedWabas: [waba],
                        numbers: [
                            waba: [("1065400000701", "+1 555-000-0701"), ("1065400000702", "+1 555-000-0702"), (phone, "+1 555-000-0777")],
                            "1022900000888": [],
                        ]),
                    "es-code-other-waba": .init(
                        businessToken: "biz-token-888", grantedWabas: [], numbers: ["1022900000888": [("1065400000888", "+1 555-000-0888")]]),
                    "es-code-taken": .init(businessToken: "biz-token-999", grantedWabas: [waba], numbers: [waba: [(H.phoneNumberId, "+1 555-078-3881")]]),
                ], pageSize: 1))
        return world
    }

    @Test(arguments: StoreBackend.allCases)
    func aFinishedSignupConnectsTheNumberWithItsOwnToken(_ backend: StoreBackend) async throws {
        let world = try await Self.world(backend)
        let state = Self.state(world)
        // The signup asks first: the number as it is dialled, nothing stored, nothing at Meta.
        let (asked, question) = await Self.post(world, ["state": state, "code": "es-code-ok", "wabaId": Self.waba, "phoneNumberId": Self.phone])
        #expect(asked == 200, "\(question)")
        #expect(question["status"] as? String == "confirm")
        #expect((question["question"] as? String)?.contains("the WhatsApp number +1 555-000-0777") == true)
        #expect(try await world.directory.route(identifier: Self.phone) == nil)
        #expect(await world.harness.graph.calls.allSatisfy { !$0.path.hasSuffix("/register") && !$0.path.hasSuffix("/subscribed_apps") })
        let (status, answer) = await Self.answer(world, question)
        #expect(status == 200, "\(answer)")
        #expect(answer["status"] as? String == "connected")
        #expect(answer["displayPhoneNumber"] as? String == "+1 555-000-0777")
        let text = String(decoding: (try? JSONSerialization.data(withJSONObject: answer)) ?? Data(), as: UTF8.self)
        #expect(!text.contains("biz-token") && !text.contains("es-code"))

        let connection = try #require(try await world.directory.credentials(tenant: Self.salon))
        #expect(connection.token(for: .whatsapp) == "biz-token-777")
        #expect(connection.phoneNumberId == Self.phone && connection.wabaId == Self.waba)
        #expect(try await world.directory.route(identifier: Self.phone)?.tenant == Self.salon)
        let pin = try await world.harness.store.get(
            world.harness.tables.credentials, key: ["businessId": .s(Self.salon.businessId), "serviceType": .s("meta#L-harbour")])?["credentials"]?
            .map?["registrationPin"]?.string
        #expect(pin?.count == 6 && pin?.allSatisfy(\.isNumber) == true)

        // What Meta was asked: the code exchanged, the token checked with the app token, the
        // WABA subscribed and the number registered with the kept PIN, all with the business token.
        let calls = await world.harness.graph.calls
        #expect(calls.contains { $0.path.hasSuffix("/debug_token") && $0.token == "\(Self.appId)|\(H.appSecret)" })
        #expect(calls.contains { $0.path.hasSuffix("/\(Self.waba)/subscribed_apps") && $0.method == "POST" && $0.token == "biz-token-777" })
        let register = try #require(calls.first { $0.path.hasSuffix("/\(Self.phone)/register") })
        #expect(register.body?["pin"] as? String == pin && register.token == "biz-token-777")

        // The state was spent: the same post again is refused, and nothing changes.
        let (again, refused) = await Self.post(world, ["state": state, "code": "es-code-ok", "wabaId": Self.waba, "phoneNumberId": Self.phone])
        #expect(again == 400 && refused["error"] as? String == "state_already_used", "\(again) \(refused)")
        await world.harness.shutdown()
    }

    /// Embedded Signup (the business's details, an SMS code) often outlasts a state's ten
    /// minutes: the page's state lives as long as the link that opened it.
    @Test func aSignupFinishedTwentyFiveMinutesIntoTheLinkIsTaken() async throws {
        let world = try await Self.world(.file)
        let config = OAuthConfig(appId: Self.appId, redirectURI: "https://example.com/external/meta/callback", stateSecret: Self.stateSecret)
        let page = ConnectPageHandler(config: config, directory: world.directory, clock: world.clock.clock)
        let link = config.connectURL(businessId: Self.salon.businessId, locationId: Self.salon.locationId, now: world.clock.now)
        let token = FormEncoding.decode(link.split(separator: "=", maxSplits: 1).last ?? "", plusIsSpace: false)
        let opened = await page.handle(HTTPRequest(method: "GET", path: "/connect", query: ["token": [token]]), logger: Logger(label: "test"))
        #expect(opened.status == 200)
        let marker = #""signupState":""#
        let start = try #require(opened.body.range(of: marker)?.upperBound)
        let state = String(opened.body[start...].prefix { $0 != "\"" })
        world.clock.advance(25 * 60)
        let (status, answer) = await Self.post(world, ["state": state, "code": "es-code-ok", "wabaId": Self.waba, "phoneNumberId": Self.phone])
        #expect(status == 200, "\(answer)")
        // Past the link's own thirty minutes, the page's state is refused like the link.
        world.clock.advance(6 * 60)
        let late = await page.handle(HTTPRequest(method: "GET", path: "/connect", query: ["token": [token]]), logger: Logger(label: "test"))
        #expect(late.status == 403)
        await world.harness.shutdown()
    }

    @Test(arguments: StoreBackend.allCases)
    func whatTheTokenCannotReachOrAnotherBusinessOwnsIsRefusedAndNothingIsStored(_ backend: StoreBackend) async throws {
        let world = try await Self.world(backend)
        // The token was granted no WABA, or not this one.
        let (notGranted, answer1) = await Self.post(
            world, ["state": Self.state(world), "code": "es-code-other-waba", "wabaId": "1022900000888", "phoneNumberId": "1065400000888"])
        #expect(notGranted == 403 && answer1["error"] as? String == "waba_not_granted")
        // A number that is not in the WABA.
        let (notInWaba, answer2) = await Self.post(
            world, ["state": Self.state(world), "code": "es-code-ok", "wabaId": Self.waba, "phoneNumberId": "1065400000999"])
        #expect(notInWaba == 403 && answer2["error"] as? String == "phone_not_in_waba")
        // The demo business's number.
        let (taken, answer3) = await Self.post(
            world, ["state": Self.state(world), "code": "es-code-taken", "wabaId": Self.waba, "phoneNumberId": H.phoneNumberId])
        #expect(taken == 409 && answer3["error"] as? String == "already_connected")
        #expect(try await world.directory.route(identifier: H.phoneNumberId)?.tenant == H.tenant)
        // One link cannot probe again: its state was spent before the 409.
        let probe = Self.state(world)
        let (first, _) = await Self.post(world, ["state": probe, "code": "es-code-taken", "wabaId": Self.waba, "phoneNumberId": H.phoneNumberId])
        let (second, answer4) = await Self.post(
            world, ["state": probe, "code": "es-code-taken", "wabaId": Self.waba, "phoneNumberId": "1065400000777"])
        #expect(first == 409)
        #expect(second == 400 && answer4["error"] as? String == "state_already_used")
        // Forged and missing input.
        let (forged, _) = await Self.post(world, ["state": Self.state(world) + "x", "code": "es-code-ok", "wabaId": Self.waba, "phoneNumberId": Self.phone])
        #expect(forged == 400)
        let (badIds, _) = await Self.post(world, ["state": Self.state(world), "code": "es-code-ok", "wabaId": "../x", "phoneNumberId": Self.phone])
        #expect(badIds == 400)
        #expect(try await world.directory.connections(businessId: Self.salon.businessId).isEmpty)
        #expect(try await world.directory.route(identifier: "1065400000888") == nil)
        await world.harness.shutdown()
    }

    @Test(arguments: StoreBackend.allCases)
    func aFailingRegistrationLeavesNothingHalfStored(_ backend: StoreBackend) async throws {
        let world = try await Self.world(backend)
        await world.harness.graph.script(
            [GraphStandIn.error(code: 133005, message: "Two step verification PIN Mismatch", type: "OAuthException")], pathSuffix: "/register")
        let (status, answer) = await Self.signup(world, ["state": Self.state(world), "code": "es-code-ok", "wabaId": Self.waba, "phoneNumberId": Self.phone])
        #expect(status == 502 && answer["error"] as? String == "graph_error")
        #expect((answer["message"] as? String)?.contains("133005") == true)
        #expect(try await world.directory.connections(businessId: Self.salon.businessId).isEmpty)
        #expect(try await world.directory.route(identifier: Self.phone) == nil)
        // A person who cancels at the question: nothing stored, nothing asked of Meta.
        let (_, question) = await Self.post(world, ["state": Self.state(world), "code": "es-code-ok", "wabaId": Self.waba, "phoneNumberId": Self.phone])
        let before = await world.harness.graph.calls.count
        let (cancelled, outcome) = await Self.answer(world, question, decision: "cancel")
        #expect(cancelled == 200 && outcome["status"] as? String == "cancelled")
        #expect(await world.harness.graph.calls.count == before)
        #expect(try await world.directory.connections(businessId: Self.salon.businessId).isEmpty)
        await world.harness.shutdown()
    }
}

/// The connect link's token, in process: it opens one location's page for 30 minutes, and it
/// is never an OAuth state (nor a state a connect token).
@Suite struct ConnectLinkTests {
    static let config = OAuthConfig(appId: "100000000000001", redirectURI: "https://api.example.com/external/meta/callback", stateSecret: "link-secret")

    @Test func aLinkOpensItsLocationForThirtyMinutesAndNothingElse() throws {
        let now = TestClock().now
        let url = Self.config.connectURL(businessId: "B0500005", locationId: "L-shop", now: now)
        #expect(url.hasPrefix("https://api.example.com/connect?token="))
        let token = try #require(url.split(separator: "=", maxSplits: 1).last.map { FormEncoding.decode($0, plusIsSpace: false) })
        #expect(Self.config.connectLink(token, now: now + 1799) == Tenant(businessId: "B0500005", locationId: "L-shop"))
        #expect(Self.config.connectLink(token, now: now + 1800) == nil)  // expired
        #expect(Self.config.connectLink(String(token.dropLast()) + (token.hasSuffix("A") ? "B" : "A"), now: now) == nil)  // altered
        // Another secret's link, and an OAuth state offered as a link, are refused; and a link is no state.
        let other = OAuthConfig(appId: "1", redirectURI: "https://api.example.com/external/meta/callback", stateSecret: "another-secret")
        #expect(Self.config.connectLink(String(other.connectURL(businessId: "B", locationId: "L", now: now).split(separator: "=").last ?? ""), now: now) == nil)
        let state = OAuthState(
            businessId: "B0500005", locationId: "L-shop", pageId: nil, redirectUri: "connect-page", nonce: OAuthState.randomNonce(), expiresAt: now + 60)
        #expect(Self.config.connectLink(state.signed(secret: "link-secret"), now: now) == nil)
        #expect(throws: OAuthState.Failure.self) { try OAuthState.verify(token, secret: "link-secret", now: now) }
    }

    @Test(arguments: StoreBackend.allCases)
    func withoutAValidLinkThePageShowsNoBusinessAndIssuesNoState(_ backend: StoreBackend) async throws {
        let world = try await HandlerRulesTests.world(backend: backend)
        let page = ConnectPageHandler(config: Self.config, directory: world.directory)
        for query in [[:], ["token": ["not-a-token"]], ["token": [String(repeating: "a", count: 5000)]]] as [[String: [String]]] {
            let response = await page.handle(HTTPRequest(method: "GET", path: "/connect", query: query), logger: Logger(label: "test"))
            #expect(response.status == 403)
            #expect(!response.body.contains("dialog/oauth") && !response.body.contains("connect-settings"))
        }
        let token = String(
            Self.config.connectURL(businessId: "B0100001", locationId: "L0100001", now: WallClock.epochSeconds()).split(separator: "=").last ?? "")
        let response = await page.handle(
            HTTPRequest(method: "GET", path: "/connect", query: ["token": [FormEncoding.decode(token, plusIsSpace: false)]]), logger: Logger(label: "test"))
        #expect(response.status == 200)
        #expect(response.body.contains("Facebook Page \(FunctionHarness.pageId)") && response.body.contains("WhatsApp number \(FunctionHarness.phoneNumberId)"))
        #expect(!response.body.contains(FunctionHarness.token) && !response.body.contains("link-secret"))
        #expect(response.headers["Content-Security-Policy"]?.contains("default-src 'none'") == true)
        await world.harness.shutdown()
    }
}

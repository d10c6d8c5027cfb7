import Essentials
import Foundation
import FunctionRuntime
import KeyValueStore
import Logging
import MetaAgents
import MetaMessaging
import MetaTenancy
import MetaWebhooks
import NIOHTTPTransport
import TestSupport
import Testing

/// Each location its own agent and rules (issue 37): the settings document and its checks,
/// the admin route, the fallback to the deployment's defaults, and the rule that keeps a
/// tenant's agent URL from reaching our own machine or network.
@Suite struct LocationSettingsTests {
    typealias H = FunctionHarness
    typealias W = HandlerRulesTests

    /// A resolver of our own: `inside.example` resolves to loopback (as a name pointed at
    /// 127.0.0.1 would), `metadata.example` to the cloud metadata address, `agent.example` to
    /// a public address, anything else to nothing.
    static let names: @Sendable (String) -> [IPAddress] = { host in
        switch host {
        case "inside.example": [IPAddress("127.0.0.1")].compactMap { $0 }
        case "metadata.example": [IPAddress("169.254.169.254")].compactMap { $0 }
        case "mixed.example": [IPAddress("93.184.216.34"), IPAddress("10.1.2.3")].compactMap { $0 }
        case "agent.example": [IPAddress("93.184.216.34"), IPAddress("2606:2800:220:1:248:1893:25c8:1946")].compactMap { $0 }
        default: []
        }
    }

    static let lambdaRules = SettingsRules(
        allowsLoopback: false, hasDeploymentSecret: true, requiresSignedAgents: true,
        lambdaFunctions: ["arn:aws:lambda:eu-west-1:123456789012:function:salon-agent"], resolve: names)
    static let localRules = SettingsRules(
        allowsLoopback: true, hasDeploymentSecret: false, requiresSignedAgents: false, lambdaFunctions: [], resolve: names)

    static func parse(_ json: String, _ rules: SettingsRules = lambdaRules) throws(SettingsError) -> LocationSettings {
        guard let document = try? JSON.parse(Array(json.utf8)) else { throw SettingsError(field: "test", problem: "bad JSON in the test") }
        return try LocationSettings.parse(document, rules: rules)
    }

    static func refusal(_ json: String, _ rules: SettingsRules = lambdaRules) -> SettingsError? {
        do {
            _ = try parse(json, rules)
            return nil
        } catch {
            return error
        }
    }

    // MARK: The document

    @Test func everySettingIsReadAndWhatIsLeftOutIsTheDefault() throws {
        let settings = try Self.parse(
            #"{"agent":{"backend":"http","url":"https://agent.example/reply"},"handoffPauseMinutes":120,"commentReplies":"private","#
                + #""senderActions":false,"answerAfterPause":true,"keepTextDuringPause":null}"#)
        #expect(settings.agent == .http(url: "https://agent.example/reply", secret: nil))
        #expect(settings.handoffPauseMinutes == 120)
        #expect(settings.commentReplies == .private)
        #expect(settings.senderActions == false)
        #expect(settings.answerAfterPause == true)
        #expect(settings.keepTextDuringPause == nil)
        var defaults = SettingsDefaults()
        defaults.keepTextDuringPause = true
        defaults.commentReplies = .off
        let resolved = defaults.resolve(settings)
        #expect(resolved.keepTextDuringPause == true)
        #expect(resolved.commentReplies == .private)
        #expect(resolved.handoffPauseMinutes == 120)
        #expect(defaults.resolve(LocationSettings()).handoffPauseMinutes == 60)

        #expect(
            try Self.parse(#"{"agent":{"backend":"lambda","function":"arn:aws:lambda:eu-west-1:123456789012:function:salon-agent"}}"#).agent
                == .lambda(function: "arn:aws:lambda:eu-west-1:123456789012:function:salon-agent"))
        #expect(
            try Self.parse(#"{"agent":{"backend":"bedrock-agent","agentId":"AGENT12345","aliasId":"TSTALIASID"}}"#).agent
                == .bedrock(agentId: "AGENT12345", aliasId: "TSTALIASID"))
        #expect(
            try Self.parse(#"{"agent":{"backend":"echo","template":"Salonul vă răspunde: {text}"}}"#).agent
                == .echo(template: "Salonul vă răspunde: {text}"))
        #expect(try Self.parse("{}") == LocationSettings())
    }

    @Test(arguments: [
        (#"{"handoffPauseMinute":60}"#, "handoffPauseMinute"),
        (#"{"handoffPauseMinutes":0}"#, "handoffPauseMinutes"),
        (#"{"handoffPauseMinutes":10081}"#, "handoffPauseMinutes"),
        (#"{"handoffPauseMinutes":"60"}"#, "handoffPauseMinutes"),
        (#"{"handoffPauseMinutes":1.5}"#, "handoffPauseMinutes"),
        (#"{"handoffPauseMinutes":99999999999999999999999}"#, "handoffPauseMinutes"),
        (#"{"commentReplies":"public"}"#, "commentReplies"),
        (#"{"senderActions":"off"}"#, "senderActions"),
        (#"{"answerAfterPause":1}"#, "answerAfterPause"),
        (#"{"agent":"http"}"#, "agent"),
        (#"{"agent":{"backend":"webhook"}}"#, "agent"),
        (#"{"agent":{"backend":"http","url":"https://agent.example","token":"x"}}"#, "agent.token"),
        (#"{"agent":{"backend":"http"}}"#, "agent.url"),
        (#"{"agent":{"backend":"http","url":"https://agent.example","secret":"short"}}"#, "agent.secret"),
        (#"{"agent":{"backend":"lambda","function":"arn:aws:lambda:eu-west-1:123456789012:function:other"}}"#, "agent.function"),
        (#"{"agent":{"backend":"bedrock-agent","agentId":"short","aliasId":"TSTALIASID"}}"#, "agent.agentId"),
        (#"{"agent":{"backend":"bedrock-agent","agentId":"AGENT12345","aliasId":"alias/../x"}}"#, "agent.aliasId"),
        (#"{"agent":{"backend":"echo","template":""}}"#, "agent.template"),
        ("[]", "settings"),
    ])
    func unknownNamesAndBadValuesAreRefusedByName(_ json: String, _ field: String) {
        #expect(Self.refusal(json)?.field == field, "\(json)")
    }

    @Test func aRefusalNeverRepeatsASecret() {
        let secret = "not-long-enough-but-secret"
        let error = Self.refusal(#"{"agent":{"backend":"http","url":"https://agent.example","secret":"\#(secret)"}}"#)
        #expect(error?.field == "agent.secret")
        #expect(!(error?.description.contains(secret) ?? true))
    }

    @Test func inLambdaAnHTTPAgentMustBeSignedByTheLocationOrTheDeployment() throws {
        var rules = Self.lambdaRules
        rules.hasDeploymentSecret = false
        #expect(Self.refusal(#"{"agent":{"backend":"http","url":"https://agent.example"}}"#, rules)?.field == "agent.secret")
        let secret = String(repeating: "s", count: 40)
        let settings = try Self.parse(#"{"agent":{"backend":"http","url":"https://agent.example","secret":"\#(secret)"}}"#, rules)
        #expect(settings.agent == .http(url: "https://agent.example", secret: Array(secret.utf8)))
        // Sent again without its secret (a secret is never read back): the secret stays.
        let document = try JSON.parse(Array(#"{"agent":{"backend":"http","url":"https://agent.example"}}"#.utf8))
        #expect(try LocationSettings.parse(document, rules: rules, current: settings).agent == settings.agent)
    }

    // MARK: Where an agent may be

    @Test(arguments: [
        ("http://agent.example/reply", "https"),
        ("ftp://agent.example/", "https"),
        ("https://10.0.0.7/reply", "private"),
        ("https://192.168.1.20/", "private"),
        ("https://172.16.0.1/", "private"),
        ("https://100.64.0.1/", "private"),
        ("https://[fd00::1]/", "private"),
        ("https://169.254.169.254/latest/meta-data/", "link-local"),
        ("https://metadata.example/", "link-local"),
        ("https://127.0.0.1:9001/2018-06-01/runtime/invocation/next", "loopback"),
        ("https://[::1]/", "loopback"),
        ("https://[::ffff:127.0.0.1]/", "loopback"),
        ("https://inside.example/reply", "loopback"),
        ("https://mixed.example/reply", "private"),
        ("https://0.0.0.0/", "unusable"),
        ("https://nowhere.example/", "does not resolve"),
        ("https://user:pass@agent.example/", "user name"),
        ("https://agent.example:99999/", "port"),
    ])
    func anAgentURLNeverReachesOurOwnMachineOrNetwork(_ url: String, _ why: String) {
        let error = Self.refusal(#"{"agent":{"backend":"http","url":"\#(url)"}}"#)
        #expect(error?.field == "agent.url", "\(url)")
        #expect(error?.problem.contains(why) == true, "\(url): \(error?.problem ?? "accepted")")
    }

    @Test func locallyALoopbackAgentIsAllowedButNotAPrivateOne() throws {
        #expect(try Self.parse(#"{"agent":{"backend":"http","url":"http://127.0.0.1:8081/reply"}}"#, Self.localRules).agent != nil)
        #expect(try Self.parse(#"{"agent":{"backend":"http","url":"https://agent.example/reply"}}"#, Self.localRules).agent != nil)
        #expect(Self.refusal(#"{"agent":{"backend":"http","url":"http://10.0.0.7/reply"}}"#, Self.localRules)?.field == "agent.url")
        // The system's own resolver: localhost is this machine.
        var system = Self.localRules
        system.resolve = IPAddress.resolve
        #expect(try Self.parse(#"{"agent":{"backend":"http","url":"http://localhost:8081/reply"}}"#, system).agent != nil)
        system.allowsLoopback = false
        #expect(Self.refusal(#"{"agent":{"backend":"http","url":"https://localhost/reply"}}"#, system)?.problem.contains("loopback") == true)
    }

    @Test func addressesAreClassifiedAsTheirNetworks() {
        let cases: [(String, IPAddress.Scope)] = [
            ("8.8.8.8", .public), ("127.0.0.53", .loopback), ("10.255.255.255", .private), ("172.31.0.1", .private), ("172.32.0.1", .public),
            ("192.168.0.1", .private), ("169.254.170.2", .linkLocal), ("224.0.0.1", .unusable), ("255.255.255.255", .unusable),
            ("::1", .loopback), ("fe80::1", .linkLocal), ("fc00::1", .private), ("::", .unusable), ("::ffff:10.0.0.1", .private),
            ("64:ff9b::a9fe:a9fe", .linkLocal), ("2001:4860:4860::8888", .public),
        ]
        for (text, scope) in cases { #expect(IPAddress(text)?.scope == scope, "\(text)") }
        #expect(IPAddress("not an address") == nil)
        #expect(IPAddress.resolve("localhost").allSatisfy { $0.scope == .loopback })
        #expect(!IPAddress.resolve("localhost").isEmpty)
    }

    /// The check made when the setting is written is made again at every call, against the
    /// address connected to: a name that resolves inward later is refused, nothing sent.
    @Test func theAgentCallItselfRefusesAnAddressTheRuleForbids() async throws {
        let recorder = Recorder()
        let agent = try await LoopbackServer { request in
            _ = await recorder.add(request)
            return .json(200, #"{"reply":"from inside"}"#)
        }
        let request = AgentSignatureTests.request
        // "localhost" resolves to 127.0.0.1: refused where only public addresses are allowed.
        let guarded = HTTPAgent(url: "http://localhost:\(agent.port)/reply", transport: NIOHTTPTransport(), peers: .publicOnly)
        do {
            _ = try await guarded.reply(to: request, timeout: .seconds(5))
            Issue.record("a loopback agent was called")
        } catch {
            #expect(error.code == .unavailable)
            #expect(error.message.contains("loopback"))
        }
        #expect(await recorder.count == 0)
        // Locally, loopback is allowed.
        let local = HTTPAgent(url: "http://localhost:\(agent.port)/reply", transport: NIOHTTPTransport(), peers: .publicOrLoopback)
        #expect(try await local.reply(to: request, timeout: .seconds(5)).text == "from inside")
        #expect(await recorder.count == 1)
        await agent.shutdown()
    }

    // MARK: The admin route

    static func handler(_ world: W.World, rules: SettingsRules = localRules, defaults: SettingsDefaults = SettingsDefaults()) -> ConnectionsHandler {
        var handler = ConnectionStatusTests.handler(world)
        handler.settingsRules = rules
        handler.settingsDefaults = defaults
        return handler
    }

    static func call(_ handler: ConnectionsHandler, _ method: String, _ path: String, body: String = "") async -> (Int, [String: Any], String) {
        let request = HTTPRequest(method: method, path: path, body: Array(body.utf8))
        let response: HTTPResponse
        do {
            response = try await handler.handle(request, logger: Logger(label: "test"))
        } catch {
            response = .error(error.status, code: error.code, message: error.errorMessage)
        }
        let document = (try? JSONSerialization.jsonObject(with: Data(response.body.utf8))) as? [String: Any] ?? [:]
        return (response.status, document, response.body)
    }

    static let path = "/external/meta/connections/B0100001/L0100001/settings"

    @Test(arguments: StoreBackend.allCases)
    func aLocationReadsAndReplacesItsSettingsThroughTheRoute(_ backend: StoreBackend) async throws {
        let world = try await W.world(backend: backend)
        var defaults = SettingsDefaults()
        defaults.agentBackend = "http"
        defaults.handoffPauseMinutes = 30
        let handler = Self.handler(world, defaults: defaults)

        // Nothing chosen yet: everything is the deployment's.
        var (status, document, _) = await Self.call(handler, "GET", Self.path)
        #expect(status == 200)
        var settings = try #require(document["settings"] as? [String: Any])
        var inForce = try #require(settings["inForce"] as? [String: Any])
        #expect((inForce["agent"] as? [String: Any])?["from"] as? String == "deployment")
        #expect((inForce["agent"] as? [String: Any])?["backend"] as? String == "http")
        #expect(inForce["handoffPauseMinutes"] as? Int == 30)
        #expect((settings["fromDeployment"] as? [String])?.count == 6)

        let secret = "salon-agent-secret-0123456789abcdef0123"
        let body =
            #"{"agent":{"backend":"http","url":"https://agent.example/reply","secret":"\#(secret)"},"handoffPauseMinutes":120,"senderActions":false}"#
        let resolving = Self.handler(
            world,
            rules: SettingsRules(allowsLoopback: true, hasDeploymentSecret: false, requiresSignedAgents: false, lambdaFunctions: [], resolve: Self.names),
            defaults: defaults)
        var raw: String
        (status, document, raw) = await Self.call(resolving, "PUT", Self.path, body: body)
        #expect(status == 200)
        #expect(!raw.contains(secret))
        (status, document, raw) = await Self.call(handler, "GET", Self.path)
        #expect(!raw.contains(secret))
        settings = try #require(document["settings"] as? [String: Any])
        inForce = try #require(settings["inForce"] as? [String: Any])
        let agent = try #require(inForce["agent"] as? [String: Any])
        #expect(agent["from"] as? String == "location")
        #expect(agent["url"] as? String == "https://agent.example/reply")
        #expect(agent["secretSet"] as? Bool == true)
        #expect(inForce["handoffPauseMinutes"] as? Int == 120)
        #expect(inForce["senderActions"] as? Bool == false)
        #expect(inForce["commentReplies"] as? String == "off")
        #expect(Set(settings["fromDeployment"] as? [String] ?? []) == ["commentReplies", "answerAfterPause", "keepTextDuringPause"])

        // What the message path reads: the same settings, with the connection.
        let credentials = try #require(await world.directory.credentials(tenant: H.tenant))
        #expect(credentials.settings.handoffPauseMinutes == 120)
        #expect(credentials.settings.agent == .http(url: "https://agent.example/reply", secret: Array(secret.utf8)))

        // A bad document changes nothing.
        (status, document, _) = await Self.call(handler, "PUT", Self.path, body: #"{"handoffPauseMinutes":-5}"#)
        #expect(status == 400)
        #expect(document["error"] as? String == "invalid_setting")
        #expect(try await world.directory.settings(of: H.tenant)?.handoffPauseMinutes == 120)
        (status, _, _) = await Self.call(handler, "PUT", Self.path, body: #"{"handoffPauseMinutes":"#)
        #expect(status == 400)
        (status, _, _) = await Self.call(handler, "PUT", Self.path, body: String(repeating: " ", count: 20_000) + "{}")
        #expect(status == 413)
        (status, _, _) = await Self.call(handler, "PUT", Self.path, body: String(repeating: "[", count: 5_000))
        #expect(status == 400)

        // A location with no connection has no settings; a bad path is named.
        (status, document, _) = await Self.call(handler, "PUT", "/external/meta/connections/B0999999/L0100001/settings", body: "{}")
        #expect(status == 404)
        #expect(document["error"] as? String == "not_connected")
        (status, _, _) = await Self.call(handler, "GET", "/external/meta/connections/B0100001/settings")
        #expect(status == 400)

        // The connection status shows what is in force.
        let (_, byLocation) = try await ConnectionStatusTests.status(world, businessId: "B0100001")
        let shown = try #require(byLocation.values.first?["settings"] as? [String: Any])
        #expect((shown["inForce"] as? [String: Any])?["handoffPauseMinutes"] as? Int == 120)

        // PUT replaces the whole document: what it leaves out goes back to the default.
        (status, _, _) = await Self.call(handler, "PUT", Self.path, body: #"{"commentReplies":"private"}"#)
        #expect(status == 200)
        let replaced = try #require(await world.directory.settings(of: H.tenant))
        #expect(replaced == LocationSettings(commentReplies: .private))
        await world.harness.shutdown()
    }

    @Test(arguments: StoreBackend.allCases)
    func connectingAgainKeepsTheSettingsAndDisconnectingRemovesThem(_ backend: StoreBackend) async throws {
        let world = try await W.world(backend: backend)
        let tenant = Tenant(businessId: "B0300003", locationId: "L-second")
        await world.harness.graph.allow(token: "page-token-second", accounts: ["1020304050607099"])
        try await world.directory.connect(tenant: tenant, pageId: "1020304050607099", instagramAccountId: nil, pageAccessToken: "page-token-second")
        #expect(try await world.directory.setSettings(LocationSettings(handoffPauseMinutes: 15), of: tenant))
        try await world.directory.connect(tenant: tenant, pageId: "1020304050607099", instagramAccountId: nil, pageAccessToken: "page-token-renewed")
        #expect(try await world.directory.settings(of: tenant)?.handoffPauseMinutes == 15)
        _ = try await world.directory.disconnect(tenant)
        #expect(try await world.directory.settings(of: tenant) == nil)
        #expect(try await world.directory.setSettings(LocationSettings(handoffPauseMinutes: 15), of: tenant) == false)
        await world.harness.shutdown()
    }

    // MARK: The settings at work

    static func sentText(_ sent: GraphStandIn.Sent) -> String? {
        ((try? JSONSerialization.jsonObject(with: Data(sent.rawBody))) as? [String: Any]).flatMap { ($0["message"] as? [String: Any])?["text"] as? String }
    }

    @Test(arguments: StoreBackend.allCases)
    func aLocationsAgentAndRulesAnswerItsConversationsAndTheRestFallBack(_ backend: StoreBackend) async throws {
        let deployment = TakeoverTests.ScriptedAgent(AgentReply(text: "the deployment's agent", handoff: true))
        let agents = Agents(fallback: deployment, transport: NIOHTTPTransport())
        let world = try await W.world(backend: backend, agent: deployment, agents: agents)

        // No settings: the deployment's agent, its pause (60 minutes), typing shown.
        let start = world.clock.now
        _ = try await W.deliver(world, TakeoverTests.customerMessage("m_settings_1", "bună"))
        #expect(await world.harness.graph.messages.compactMap(Self.sentText) == ["the deployment's agent"])
        #expect(try await TakeoverTests.state(world).pausedUntil == start + 3600)
        #expect(await world.harness.graph.senderActions.count >= 2)
        let actionsBefore = await world.harness.graph.senderActions.count

        // The location's own: an echo agent of its own wording, a 5-minute pause, no typing.
        let settings = LocationSettings(agent: .echo(template: "Salonul: {text}"), handoffPauseMinutes: 5, senderActions: false)
        #expect(try await world.directory.setSettings(settings, of: H.tenant))
        try await world.conversations.resume(platform: .instagram, account: H.pageId, customer: TakeoverTests.customer)
        _ = try await W.deliver(world, TakeoverTests.customerMessage("m_settings_2", "aveți loc?"))
        #expect(await world.harness.graph.messages.compactMap(Self.sentText).last == "Salonul: aveți loc?")
        #expect(await world.harness.graph.senderActions.count == actionsBefore)
        #expect(deployment.requests.count == 1)

        // A person's answer pauses it for the location's 5 minutes.
        let now = world.clock.now
        _ = try await W.deliver(world, TakeoverTests.echo(mid: "m_written_by_the_owner"))
        #expect(try await TakeoverTests.state(world).pausedUntil == now + 300)
        await world.harness.shutdown()
    }
}

import Essentials
import Foundation
import FunctionRuntime
import KeyValueStore
import Logging
import MetaAgents
import MetaMessaging
import MetaTenancy
import MetaWebhooks
import TestSupport
import Testing

/// A handover that keeps the thread (issue 37): what is said during a pause reaches the
/// agent's next turn, a pause that ends with the customer unanswered is offered to the agent
/// once, and a business sees its paused conversations. In process, with the world's clock.
@Suite struct PauseBacklogTests {
    typealias H = FunctionHarness
    typealias W = HandlerRulesTests
    typealias T = TakeoverTests

    static func world(_ backend: StoreBackend, settings: LocationSettings) async throws -> (W.World, T.ScriptedAgent) {
        let agent = T.ScriptedAgent(AgentReply(text: "Revin eu cu detalii."))
        let world = try await W.world(backend: backend, agent: agent)
        #expect(try await world.directory.setSettings(settings, of: H.tenant))
        return (world, agent)
    }

    static func sweep(_ world: W.World) async -> ProcessHandler.OfferReport {
        await world.process.offerWaitingAfterPauses(context: world.context())
    }

    @Test(arguments: StoreBackend.allCases)
    func whatWasSaidDuringThePauseReachesTheNextTurnOnce(_ backend: StoreBackend) async throws {
        let (world, agent) = try await Self.world(backend, settings: LocationSettings(handoffPauseMinutes: 30, keepTextDuringPause: true))
        // The owner answers from the Instagram app; the customer writes twice meanwhile.
        _ = try await W.deliver(world, T.echo(mid: "m_owner_1"))
        _ = try await W.deliver(world, T.customerMessage("m_during_1", "la ce oră?"))
        _ = try await W.deliver(world, T.customerMessage("m_during_2", "mai e loc?"))
        #expect(agent.requests.isEmpty)
        #expect(try await world.ledger.status(of: "m_during_2") == .paused)

        world.clock.advance(30 * 60 + 1)
        _ = try await W.deliver(world, T.customerMessage("m_after_1", "alo?"))
        let asked = try #require(agent.requests.last)
        #expect(asked.text == "alo?")
        let earlier = try #require(asked.duringPause)
        #expect(earlier.map(\.messageId) == ["m_owner_1", "m_during_1", "m_during_2"])
        #expect(earlier.map(\.from) == ["business", "customer", "customer"])
        #expect(earlier.map(\.text) == ["Bună, vă ajut eu", "la ce oră?", "mai e loc?"])
        #expect(asked.afterPause == nil)

        // Told once: the next turn carries nothing of it.
        _ = try await W.deliver(world, T.customerMessage("m_after_2", "mulțumesc"))
        #expect(agent.requests.last?.duringPause == nil)
        #expect(try await T.state(world).backlog.isEmpty)
        await world.harness.shutdown()
    }

    @Test func withoutTheLocationsLeaveOnlyIdsAreKept() async throws {
        let (world, agent) = try await Self.world(.file, settings: LocationSettings(handoffPauseMinutes: 30))
        _ = try await W.deliver(world, T.echo(mid: "m_owner_2"))
        _ = try await W.deliver(world, T.customerMessage("m_during_3", "numărul meu e 0722 000 000"))
        let kept = try await T.state(world).backlog
        #expect(kept.map(\.messageId) == ["m_owner_2", "m_during_3"])
        #expect(kept.allSatisfy { $0.text == nil })
        world.clock.advance(30 * 60 + 1)
        _ = try await W.deliver(world, T.customerMessage("m_after_3", "alo?"))
        #expect(agent.requests.last?.duringPause?.map(\.text) == [nil, nil])
        await world.harness.shutdown()
    }

    @Test(arguments: StoreBackend.allCases)
    func aPauseThatEndsWithTheCustomerUnansweredIsOfferedOnce(_ backend: StoreBackend) async throws {
        let (world, agent) = try await Self.world(
            backend, settings: LocationSettings(handoffPauseMinutes: 20, answerAfterPause: true, keepTextDuringPause: true))
        _ = try await W.deliver(world, T.echo(mid: "m_owner_3"))
        _ = try await W.deliver(world, T.customerMessage("m_waiting_1", "și prețul?"))
        _ = try await W.deliver(world, T.customerMessage("m_waiting_2", "vă rog"))

        // Still paused: nothing is offered.
        world.clock.advance(19 * 60)
        #expect(await Self.sweep(world).offered == 0)
        #expect(agent.requests.isEmpty)

        // The person writes again: the pause is extended, and its offer follows it (not read
        // every minute until then), still offered once when it ends.
        let extendedFrom = world.clock.now
        _ = try await W.deliver(world, T.echo(mid: "m_owner_3b"))
        world.clock.advance(60 + 1)
        #expect(await Self.sweep(world).offered == 0)
        #expect(try await T.state(world).offerAt == extendedFrom + 20 * 60)
        world.clock.advance(19 * 60)

        // Ended: offered once, as one turn of what the customer wrote.
        world.clock.advance(60 + 1)
        let sent = await world.harness.graph.messages.count
        let report = await Self.sweep(world)
        #expect(report == ProcessHandler.OfferReport(offered: 1, answered: 1))
        let offered = try #require(agent.requests.last)
        #expect(offered.afterPause == true)
        #expect(offered.text == "și prețul?\nvă rog")
        #expect(offered.messageId == "m_waiting_2")
        #expect(offered.duringPause?.map(\.messageId) == ["m_owner_3", "m_waiting_1", "m_waiting_2", "m_owner_3b"])
        #expect(await world.harness.graph.messages.count == sent + 1)
        #expect(await world.harness.graph.messages.last.flatMap(LocationSettingsTests.sentText) == "Revin eu cu detalii.")

        // Once: the next sweep finds nothing, and the customer's next turn is told nothing again.
        #expect(await Self.sweep(world).offered == 0)
        _ = try await W.deliver(world, T.customerMessage("m_after_4", "mersi"))
        #expect(agent.requests.last?.duringPause == nil)
        #expect(agent.requests.count == 2)
        await world.harness.shutdown()
    }

    @Test func aResumedConversationIsOfferedAtOnceAndALocationThatDidNotAskIsNot() async throws {
        let (world, agent) = try await Self.world(.file, settings: LocationSettings(answerAfterPause: true))
        _ = try await W.deliver(world, T.echo(mid: "m_owner_4"))
        _ = try await W.deliver(world, T.customerMessage("m_waiting_3", "bună"))
        // A person resumes the agent well before the pause would end: due now.
        #expect(try await world.conversations.resume(platform: .instagram, account: H.pageId, customer: T.customer))
        #expect(await Self.sweep(world).offered == 1)
        #expect(agent.requests.last?.afterPause == true)
        #expect(agent.requests.last?.text == "")

        // Another customer, a location that no longer wants offers: nothing is offered, and
        // what was said waits for the customer's next turn.
        _ = try await W.deliver(world, T.echo(mid: "m_owner_5", customer: "42"))
        _ = try await W.deliver(world, H.messaging(events: [H.textEvent(mid: "m_waiting_4", text: "hei", sender: "42")]))
        #expect(try await world.directory.setSettings(LocationSettings(answerAfterPause: false), of: H.tenant))
        world.clock.advance(3601)
        #expect(await Self.sweep(world).offered == 0)
        #expect(agent.requests.count == 1)
        _ = try await W.deliver(world, H.messaging(events: [H.textEvent(mid: "m_after_5", text: "alo", sender: "42")]))
        #expect(agent.requests.last?.duringPause?.map(\.messageId) == ["m_owner_5", "m_waiting_4"])
        await world.harness.shutdown()
    }

    @Test(arguments: StoreBackend.allCases)
    func aBusinessSeesItsPausedConversations(_ backend: StoreBackend) async throws {
        let (world, _) = try await Self.world(backend, settings: LocationSettings(handoffPauseMinutes: 45))
        func list(_ businessId: String = "B0100001") async throws -> [[String: Any]] {
            let request = HTTPRequest(method: "GET", path: "/conversations", query: ["businessId": [businessId], "paused": ["true"]])
            let response = try await world.send.function.handle(event: try Self.gatewayEvent(request), context: world.context())
            let document = try #require(try JSONSerialization.jsonObject(with: Data(response)) as? [String: Any])
            #expect(document["statusCode"] as? Int == 200)
            let body = try #require((document["body"] as? String)?.data(using: .utf8))
            return try #require(try JSONSerialization.jsonObject(with: body) as? [String: Any])["paused"] as? [[String: Any]] ?? []
        }
        #expect(try await list().isEmpty)
        let start = world.clock.now
        _ = try await W.deliver(world, T.echo(mid: "m_owner_6"))
        _ = try await W.deliver(world, T.customerMessage("m_waiting_5", "?"))
        let paused = try await list()
        #expect(paused.count == 1)
        #expect(paused.first?["customerId"] as? String == T.customer)
        #expect(paused.first?["platform"] as? String == "instagram")
        #expect(paused.first?["pausedBy"] as? String == "human")
        #expect(paused.first?["pausedUntil"] as? String == ISO8601.format(epochSeconds: start + 45 * 60))
        #expect(paused.first?["waiting"] as? Int == 1)
        #expect(try await list("B0999999").isEmpty)
        world.clock.advance(45 * 60 + 1)
        #expect(try await list().isEmpty)
        await world.harness.shutdown()
    }

    /// A handover protocol event on Messenger (Messenger Platform "messaging_handovers").
    static func handover(_ kind: String, from previous: String?, to next: String?, customer: String = "6543210987654321") -> String {
        let previousOwner = previous.map { #""\#($0)""# } ?? "null"
        let newOwner = next.map { #""\#($0)""# } ?? "null"
        let event =
            #"{"sender":{"id":"\#(customer)"},"recipient":{"id":"\#(H.pageId)"},"timestamp":\#(WallClock.epochMilliseconds()),"#
            + #""\#(kind)":{"previous_owner_app_id":\#(previousOwner),"new_owner_app_id":\#(newOwner),"metadata":"from the inbox"}}"#
        return H.messaging(object: "page", account: H.pageId, events: [event])
    }

    /// Meta's Page Inbox: the app a person answers in when Conversation Routing is on.
    static let pageInbox = "263902037430900"

    @Test(arguments: StoreBackend.allCases)
    func theHandoverProtocolSaysWhoHasTheConversation(_ backend: StoreBackend) async throws {
        let (world, agent) = try await Self.world(
            backend, settings: LocationSettings(handoffPauseMinutes: 90, answerAfterPause: true, keepTextDuringPause: true))
        let customer = "6543210987654321"
        // A person takes the conversation in the Page Inbox: the agent steps back at once.
        let start = world.clock.now
        let taken = try await W.deliver(world, Self.handover("take_thread_control", from: W.appId, to: Self.pageInbox))
        #expect(W.summary(taken)["handovers"] as? Int == 1)
        let state = try await T.state(world, .messenger, customer: customer)
        #expect(state.pausedUntil == start + 90 * 60)
        #expect(state.pausedBy == .human)
        _ = try await W.deliver(
            world,
            H.messaging(object: "page", account: H.pageId, events: [H.textEvent(mid: "m_inbox_1", text: "încă aștept", sender: customer, recipient: H.pageId)]))
        #expect(agent.requests.isEmpty)

        // The inbox passes it back to our app: answered again, what waited offered at once.
        world.clock.advance(60)
        _ = try await W.deliver(world, Self.handover("pass_thread_control", from: Self.pageInbox, to: W.appId))
        #expect(try await T.state(world, .messenger, customer: customer).pausedUntil == nil)
        #expect(await Self.sweep(world).offered == 1)
        #expect(agent.requests.last?.text == "încă aștept")
        #expect(agent.requests.last?.afterPause == true)

        // Passed between two other apps: still not ours.
        _ = try await W.deliver(world, Self.handover("pass_thread_control", from: Self.pageInbox, to: "999999999999999"))
        #expect(try await T.state(world, .messenger, customer: customer).isPaused(at: world.clock.now))
        await world.harness.shutdown()
    }

    /// An API Gateway HTTP API event for `request`.
    static func gatewayEvent(_ request: HTTPRequest) throws -> [UInt8] {
        let query = request.query.map { "\($0.key)=\($0.value.first ?? "")" }.joined(separator: "&")
        let event: [String: Any] = [
            "version": "2.0", "rawPath": request.path, "rawQueryString": query,
            "queryStringParameters": request.query.mapValues { $0.first ?? "" },
            "requestContext": ["http": ["method": request.method, "path": request.path]], "isBase64Encoded": false,
        ]
        return Array(try JSONSerialization.data(withJSONObject: event))
    }
}

import Essentials
import Foundation
import MetaAgents
import MetaMessaging
import MetaWebhooks
import TestSupport
import Testing

/// `receive`'s rules in process, on the world's clock: the order of a delivery's events, what
/// a bad event does to the others, how a customer's messages become one turn, and the inline
/// budget. The budget is measured on the clock, so the work itself takes none of it however
/// loaded the machine; the test spends it by advancing the clock. The process-level suite
/// (`ReceiveTests`) keeps the contract: stdin, stdout, exit codes, both stores, races.
@Suite struct ReceiveRulesTests {
    typealias H = FunctionHarness
    typealias W = HandlerRulesTests

    static func texts(_ world: W.World) async -> [String] {
        await world.harness.graph.messages.compactMap { ($0.body?["message"] as? [String: Any])?["text"] as? String }
    }

    @Test(arguments: StoreBackend.allCases)
    func batchesAreHandledInTimestampOrderAndOneBadEventStopsNothing(_ backend: StoreBackend) async throws {
        let world = try await W.world(backend: backend)
        let body = #"""
            {"object":"instagram","entry":[
              {"id":"\#(H.instagramId)","time":1,"messaging":[\#(H.textEvent(mid: "m_third", text: "third", timestamp: 3000)),{"sender":{},"timestamp":1500},\#(H.textEvent(mid: "m_first", text: "first", timestamp: 1000))]},
              {"id":"\#(H.instagramId)","time":2,"messaging":[\#(H.textEvent(mid: "m_second", text: "second", timestamp: 2000)),{"sender":{"id":"x"},"timestamp":"oops","message":{"text":"no mid"}},\#(H.textEvent(mid: "m_fourth", text: "fourth", timestamp: 4000))]}
            ]}
            """#
        let response = try await W.deliver(world, body)
        #expect(response.status == 200)
        #expect(W.summary(response)["answered"] as? Int == 4)
        #expect(W.summary(response)["invalid"] as? Int == 2)
        // One customer's four messages of one delivery are one turn: one reply, in order.
        #expect(await Self.texts(world) == ["Echo: first\nsecond\nthird\nfourth"])
        for mid in ["m_first", "m_second", "m_third", "m_fourth"] { #expect(try await world.ledger.status(of: mid) == .answered) }
        // A redelivery of any of them is a duplicate.
        let again = try await W.deliver(world, H.messaging(events: [H.textEvent(mid: "m_third", text: "third", timestamp: 3000)]))
        #expect(W.summary(again)["duplicates"] as? Int == 1)
        #expect(await world.harness.graph.messages.count == 1)
        await world.harness.shutdown()
    }

    @Test func attachmentsPostbacksQuickRepliesAndStoryRepliesAreAnswered() async throws {
        let world = try await W.world(senderActions: false)
        let events = [
            #"{"sender":{"id":"1"},"recipient":{"id":"\#(H.instagramId)"},"timestamp":10,"message":{"mid":"m_video","attachments":[{"type":"video","payload":{"url":"https://cdn.example/v.mp4"}}]}}"#,
            #"{"sender":{"id":"1"},"recipient":{"id":"\#(H.instagramId)"},"timestamp":11,"message":{"mid":"m_share","attachments":[{"type":"share","payload":{"url":"https://instagram.example/p/1"}}]}}"#,
            #"{"sender":{"id":"1"},"recipient":{"id":"\#(H.instagramId)"},"timestamp":12,"message":{"mid":"m_mention","attachments":[{"type":"story_mention","payload":{"url":"https://cdn.example/story"}}]}}"#,
            #"{"sender":{"id":"1"},"recipient":{"id":"\#(H.instagramId)"},"timestamp":13,"message":{"mid":"m_story_reply","text":"love it","reply_to":{"story":{"url":"https://cdn.example/s","id":"1"}}}}"#,
            #"{"sender":{"id":"1"},"recipient":{"id":"\#(H.instagramId)"},"timestamp":14,"message":{"mid":"m_quick","text":"Tomorrow","quick_reply":{"payload":"BOOK_TOMORROW"}}}"#,
            #"{"sender":{"id":"1"},"recipient":{"id":"\#(H.instagramId)"},"timestamp":15,"postback":{"mid":"m_postback","title":"Book now","payload":"BOOK"}}"#,
            #"{"sender":{"id":"1"},"recipient":{"id":"\#(H.instagramId)"},"timestamp":16,"message":{"mid":"m_audio","attachments":[{"type":"audio","payload":{"url":"https://cdn.example/a.mp4"}}]}}"#,
            #"{"sender":{"id":"1"},"recipient":{"id":"\#(H.instagramId)"},"timestamp":17,"message":{"mid":"m_file","attachments":[{"type":"file","payload":{"url":"https://cdn.example/f.pdf"}}]}}"#,
            #"{"sender":{"id":"1"},"recipient":{"id":"\#(H.instagramId)"},"timestamp":18,"message":{"mid":"m_image","attachments":[{"type":"image","payload":{"url":"https://cdn.example/i.jpg"}}]}}"#,
        ]
        var answered = 0
        for batch in stride(from: 0, to: events.count, by: 3) {
            let response = try await W.deliver(world, H.messaging(events: Array(events[batch..<(batch + 3)])))
            answered += W.summary(response)["answered"] as? Int ?? 0
        }
        #expect(answered == 9)
        // Each delivery's three messages from one customer are one turn.
        #expect(
            await Self.texts(world) == [
                "Echo: [video: https://cdn.example/v.mp4]\n[share: https://instagram.example/p/1]\n[story_mention: https://cdn.example/story]",
                "Echo: love it\nTomorrow\nBook now",
                "Echo: [audio: https://cdn.example/a.mp4]\n[file: https://cdn.example/f.pdf]\n[image: https://cdn.example/i.jpg]",
            ])
        await world.harness.shutdown()
    }

    /// An agent that takes `seconds` of the world's clock to answer.
    struct SlowAgent: Agent {
        let clock: TestClock
        let seconds: Int64
        func reply(to request: AgentRequest, timeout: Duration) async throws(AgentError) -> AgentReply {
            clock.advance(seconds)
            return AgentReply(text: "Echo: \(request.text)")
        }
    }

    /// The inline budget is Meta's 5-second window less a margin, on the clock: a turn that
    /// starts with too little of it left is not begun, its claim is released and the delivery
    /// is answered 500, so Meta delivers it again and the redelivery answers it (the first turn
    /// is then a duplicate). Turns that would start in time are answered whatever real time
    /// the machine took.
    @Test func aTurnWithoutTimeLeftIsHandedBackAndAnsweredOnRedelivery() async throws {
        let harness = try await H.make(.file)
        let world = try await W.world(
            agent: SlowAgent(clock: harness.clock, seconds: 4), senderActions: false, harness: harness)
        // One turn at a time, so the second starts after the first spent 4 s of the 4.5.
        var receive = world.receive
        receive.maxConcurrentTurns = 1
        let slowWorld = W.World(
            harness: world.harness, directory: world.directory, ledger: world.ledger, clock: world.clock, receive: receive, send: world.send,
            process: world.process, conversations: world.conversations)
        try await harness.openWindows(at: world.clock.now, customers: [(.instagram, "c1"), (.instagram, "c2")])
        let body = H.messaging(events: [
            H.textEvent(mid: "m_budget_1", text: "one", sender: "c1", timestamp: H.now),
            H.textEvent(mid: "m_budget_2", text: "two", sender: "c2", timestamp: H.now + 1),
        ])
        let first = try await W.deliver(slowWorld, body)
        #expect(first.status == 500)
        #expect(W.summary(first)["answered"] as? Int == 1)
        #expect(await Self.texts(world) == ["Echo: one"])
        #expect(try await world.ledger.status(of: "m_budget_1") == .answered)
        #expect(try await world.ledger.status(of: "m_budget_2") != .answered)
        // Meta's redelivery: the first is a duplicate, the second is answered now.
        let again = try await W.deliver(slowWorld, body)
        #expect(again.status == 200)
        #expect(W.summary(again)["duplicates"] as? Int == 1)
        #expect(W.summary(again)["answered"] as? Int == 1)
        #expect(await Self.texts(world) == ["Echo: one", "Echo: two"])
        await world.harness.shutdown()
    }
}

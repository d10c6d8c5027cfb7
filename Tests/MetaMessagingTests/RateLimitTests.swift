import Essentials
import Foundation
import MetaAgents
import MetaGraph
import MetaMessaging
import MetaWebhooks
import NIOHTTPTransport
import TestSupport
import Testing

/// Meta's rate limits (issue 23): the usage headers and throttling codes of the Graph API
/// ("Rate Limits": `X-App-Usage`, `X-Page-Usage`, `X-Business-Use-Case-Usage`; codes 4, 17,
/// 32, 613 and the Business Use Case 800xx), read on every answer; a throttled account is left
/// alone, in `receive` by Meta's redelivery and in `process` by the queue.
@Suite struct RateLimitTests {
    typealias H = FunctionHarness
    typealias W = HandlerRulesTests

    /// The Business Use Case header as Meta documents it, for the connected Instagram account.
    static func bucHeader(callCount: Int, minutes: Int) -> (String, String) {
        (
            "X-Business-Use-Case-Usage",
            #"{"\#(H.instagramId)":[{"type":"instagram","call_count":\#(callCount),"total_cputime":12,"total_time":14,"estimated_time_to_regain_access":\#(minutes)}]}"#
        )
    }

    /// Meta's answer when an Instagram account is over its Business Use Case limit.
    static func throttledAnswer(minutes: Int) -> LoopbackServer.Response {
        LoopbackServer.Response(
            status: 400, headers: [("Content-Type", "application/json"), bucHeader(callCount: 100, minutes: minutes)],
            body: Array(
                #"{"error":{"message":"(#80002) There have been too many calls to this Instagram account. Wait a bit and try again.","type":"OAuthException","code":80002,"fbtrace_id":"AbCdEfGh123"}}"#
                    .utf8))
    }

    @Test func usageHeadersAndThrottlingCodesAreRead() {
        let headers = [
            ("x-app-usage", #"{"call_count":28,"total_time":25,"total_cputime":25}"#),
            ("X-Page-Usage", #"{"call_count":96,"total_time":12,"total_cputime":9}"#),
            Self.bucHeader(callCount: 40, minutes: 7),
        ]
        let usage = GraphUsage.from { name in headers.first { $0.0.lowercased() == name.lowercased() }?.1 }
        #expect(usage == GraphUsage(highestPercent: 96, minutesToRegainAccess: 7))
        #expect(GraphUsage.from { _ in nil } == nil)
        // A header that is not Meta's JSON, or holds out-of-range numbers, is advice ignored.
        let hostile = GraphUsage.from { name in
            name == "X-App-Usage" ? #"{"call_count":1e400,"total_time":-5,"total_cputime":"x"}"# : name == "X-Page-Usage" ? "[[[[[[[[" : nil
        }
        #expect(hostile == GraphUsage(highestPercent: 0, minutesToRegainAccess: 0))

        for code in [4, 17, 32, 613, 80001, 80002, 80006, 80007, 130429, 131056] {
            #expect(GraphError(kind: .graph, httpStatus: 400, code: code, message: "throttled").isThrottled, "code \(code)")
        }
        for code in [1, 2, 10, 100, 190, 131047] {
            #expect(!GraphError(kind: .graph, httpStatus: 400, code: code, message: "other").isThrottled, "code \(code)")
        }
        var error = GraphError(kind: .graph, httpStatus: 400, code: 80002, message: "throttled")
        #expect(error.secondsToRegainAccess == 60)
        error.usage = GraphUsage(highestPercent: 100, minutesToRegainAccess: 7)
        #expect(error.secondsToRegainAccess == 420)

        // Near the limit (95 % or more), an account is left alone before Meta throttles it.
        let throttle = AccountThrottle(clock: TestClock().clock)
        #expect(throttle.observe(GraphUsage(highestPercent: 94), account: "a") == nil)
        #expect(throttle.remaining("a") == nil)
        #expect(throttle.observe(GraphUsage(highestPercent: 97), account: "a") == 60)
        #expect(throttle.remaining("a") == 60)
        #expect(throttle.remaining("b") == nil)
    }

    @Test func receiveLeavesAThrottledAccountsMessagesToMetasRedeliveryWithoutRetrying() async throws {
        let harness = try await H.make(.file)
        await harness.graph.script([Self.throttledAnswer(minutes: 7)], pathSuffix: "/messages")
        // Two customers of one account in one delivery, one turn at a time: the first turn
        // meets the limit, the second is not even tried (nor its agent asked). (Turns that run
        // at the same time each meet Meta's answer themselves.)
        let body = H.messaging(events: [
            H.textEvent(mid: "m_limit_1", text: "hi", sender: "customer-a", timestamp: H.now),
            H.textEvent(mid: "m_limit_2", text: "hello", sender: "customer-b", timestamp: H.now + 1),
        ])
        let result = try await harness.run("receive", H.webhookEvent(body), extra: ["TURN_CONCURRENCY": "1"])
        #expect(result.statusCode == 500, "\(result.stderr.suffix(800))")
        #expect(result.bodyJSON?["throttled"] as? Int == 2)
        #expect(await harness.graph.messages.count == 1)
        // Released, not failed: Meta's redelivery answers them once the account is free.
        #expect(try await harness.ledgerStatus("m_limit_1") == "answering")
        #expect(try await harness.ledgerStatus("m_limit_2") == "answering")
        #expect(result.stderr.contains("Meta throttles an account"))
        #expect(result.stderr.contains(H.pageId))
        // Counted in the metrics (CloudWatch EMF on stderr), among the failed.
        #expect(result.stderr.contains(#""Throttled":2"#), "\(result.stderr.suffix(800))")
        #expect(!result.stderr.contains(H.token))

        // A redelivery to another execution within Meta's seven minutes: that one knows too
        // (the shared throttle), so nothing is tried.
        let soon = try await harness.run("receive", H.webhookEvent(body))
        #expect(soon.statusCode == 500)
        #expect(soon.bodyJSON?["throttled"] as? Int == 2)
        #expect(await harness.graph.messages.count == 1)

        // The redelivery once Meta's limit is over: answered once each.
        let world = try await W.world(senderActions: false, harness: harness, sharedThrottle: true)
        world.clock.advance(max(0, WallClock.epochSeconds() - world.clock.now) + 7 * 60 + 1)
        let again = try await W.deliver(world, body)
        #expect(again.status == 200)
        #expect(W.summary(again)["answered"] as? Int == 2)
        #expect(try await harness.ledgerStatus("m_limit_1") == "answered")
        await harness.shutdown()
    }

    /// Two executions on one store (each its own memory): a throttle one meets on a reply
    /// stops the other before its agent runs, until Meta's time is over.
    @Test(arguments: StoreBackend.allCases)
    func aThrottleOneExecutionMeetsStopsTheOthersBeforeTheirAgent(_ backend: StoreBackend) async throws {
        let harness = try await H.make(backend)
        let first = TakeoverTests.ScriptedAgent(AgentReply(text: "hi"))
        let second = TakeoverTests.ScriptedAgent(AgentReply(text: "hello"))
        let one = try await W.world(agent: first, senderActions: false, harness: harness, sharedThrottle: true)
        let other = try await W.world(agent: second, senderActions: false, harness: harness, sharedThrottle: true)
        await harness.graph.script([Self.throttledAnswer(minutes: 7)], pathSuffix: "/messages")
        let met = try await W.deliver(one, H.messaging(events: [H.textEvent(mid: "m_shared_1", text: "hi", sender: "customer-a")]))
        #expect(met.status == 500)
        #expect(W.summary(met)["throttled"] as? Int == 1)
        let shared = try await harness.store.get(harness.tables.processedMessages, key: ["messageId": .s("throttle:\(H.pageId)")])
        #expect(shared?["until"]?.int == harness.clock.now + 7 * 60)

        let body = H.messaging(events: [H.textEvent(mid: "m_shared_2", text: "hello", sender: "customer-b")])
        let stopped = try await W.deliver(other, body)
        #expect(stopped.status == 500)
        #expect(W.summary(stopped)["throttled"] as? Int == 1)
        #expect(second.requests.isEmpty, "the other execution's agent ran for an account Meta throttles")
        #expect(await harness.graph.messages.count == 1)

        // Meta's seven minutes over: answered.
        harness.clock.advance(7 * 60 + 1)
        let later = try await W.deliver(other, body)
        #expect(later.status == 200)
        #expect(W.summary(later)["answered"] as? Int == 1)
        #expect(second.requests.count == 1)
        await harness.shutdown()
    }

    @Test func aThrottledProfileLookupStopsTheAgentBeforeItRuns() async throws {
        let agent = TakeoverTests.ScriptedAgent(AgentReply(text: "hi"))
        let world = try await W.world(agent: agent, senderActions: false, sharedThrottle: true)
        await world.harness.graph.script(
            [GraphStandIn.error(status: 400, code: 613, message: "Calls to this api have exceeded the rate limit.")], pathSuffix: "/customer-p")
        let response = try await W.deliver(world, H.messaging(events: [H.textEvent(mid: "m_profile_limit", text: "hi", sender: "customer-p")]))
        #expect(response.status == 500)
        #expect(W.summary(response)["throttled"] as? Int == 1)
        #expect(agent.requests.isEmpty)
        #expect(await world.harness.graph.messages.isEmpty)
        #expect(try await world.ledger.status(of: "m_profile_limit") == .answering)
        // Known to the other executions too.
        #expect(try await world.harness.store.get(world.harness.tables.processedMessages, key: ["messageId": .s("throttle:\(H.pageId)")]) != nil)
        await world.harness.shutdown()
    }

    @Test func sendAnswersThrottledAtOnceInsteadOfSpendingRetries() async throws {
        let harness = try await H.make(.file)
        await harness.graph.script(
            [GraphStandIn.error(status: 400, code: 613, message: "Calls to this api have exceeded the rate limit.")], pathSuffix: "/messages")
        let input = #"{"businessId":"B0100001","platform":"instagram","recipientId":"1234567890123456","message":{"text":"x"}}"#
        let result = try await harness.run("send", Array(input.utf8))
        #expect(result.json?["errorType"] as? String == "Throttled", "\(result.stdout)")
        #expect(result.json?["retryAfterSeconds"] as? Int == 60 || (result.json?["errorMessage"] as? String ?? "").contains("60 s"))
        #expect(await harness.graph.calls.count == 1)
        await harness.shutdown()
    }

    @Test func anAccountNearItsLimitIsLeftAloneBeforeMetaThrottlesIt() async throws {
        let harness = try await H.make(.file)
        let nearLimit = LoopbackServer.Response(
            status: 200, headers: [("Content-Type", "application/json"), Self.bucHeader(callCount: 98, minutes: 0)],
            body: Array(#"{"recipient_id":"customer-a","message_id":"m_SENT_NEAR"}"#.utf8))
        await harness.graph.script([nearLimit], pathSuffix: "/messages")
        let body = H.messaging(events: [
            H.textEvent(mid: "m_near_1", text: "hi", sender: "customer-a", timestamp: H.now),
            H.textEvent(mid: "m_near_2", text: "hello", sender: "customer-b", timestamp: H.now + 1),
        ])
        let result = try await harness.run("receive", H.webhookEvent(body), extra: ["TURN_CONCURRENCY": "1"])
        // One turn at a time: the first reply went out at 98 %; the second waits for the next minute.
        #expect(result.bodyJSON?["answered"] as? Int == 1, "\(result.stderr.suffix(800))")
        #expect(result.bodyJSON?["throttled"] as? Int == 1)
        #expect(result.statusCode == 500)
        #expect(await harness.graph.messages.count == 1)
        #expect(result.stderr.contains("near its Graph API rate limit"))
        await harness.shutdown()
    }

    @Test func aReplyBegunGoesOutWholeWhenItsFirstPartFindsTheAccountNearItsLimit() async throws {
        let harness = try await H.make(.file)
        let long = (1...60).map { "Sentence \($0) says something useful about the booking." }.joined(separator: " ")
        let parts = OutboundMessage.parts(of: long, for: .instagram)
        try #require(parts.count > 1)
        let agent = try await LoopbackServer { _ in
            .json(200, String(decoding: (try? JSONSerialization.data(withJSONObject: ["reply": long])) ?? Data(), as: UTF8.self))
        }
        var harnessWithAgent = harness
        harnessWithAgent.environment["AGENT_BACKEND"] = "http"
        harnessWithAgent.environment["AGENT_HTTP_URL"] = agent.baseURL
        let nearLimit = LoopbackServer.Response(
            status: 200, headers: [("Content-Type", "application/json"), Self.bucHeader(callCount: 99, minutes: 0)],
            body: Array(#"{"recipient_id":"customer-a","message_id":"m_PART_1"}"#.utf8))
        await harness.graph.script([nearLimit], pathSuffix: "/messages")
        let body = H.messaging(events: [H.textEvent(mid: "m_long_near", text: "tell me everything", sender: "customer-a", timestamp: H.now)])
        let result = try await harnessWithAgent.run("receive", H.webhookEvent(body))
        #expect(result.bodyJSON?["answered"] as? Int == 1, "\(result.stderr.suffix(800))")
        // Every part went: the pause applies to the next turn, not to the rest of this reply.
        #expect(await harness.graph.messages.count == parts.count)
        await agent.shutdown()
        await harness.shutdown()
    }

    @Test func processReturnsAThrottledAccountsRecordsAndKeepsThemAwayUntilMetaLetsGo() async throws {
        let setup = try await QueueDispatchTests.setUp()
        let events = [
            H.textEvent(mid: "m_queued_limit_1", text: "one", sender: "customer-a", timestamp: H.now),
            H.textEvent(mid: "m_queued_limit_2", text: "two", sender: "customer-a", timestamp: H.now + 1),
        ]
        let received = try await Executables.run("receive", environment: setup.environment, stdin: H.webhookEvent(H.messaging(events: events)))
        #expect(received.bodyJSON?["queued"] as? Int == 2)
        var messages: [JSON] = []
        for _ in 0..<5 where messages.count < 2 { messages += try await setup.queue.receive() }
        try #require(messages.count == 2)

        await setup.harness.graph.script([Self.throttledAnswer(minutes: 7)], pathSuffix: "/messages")
        let queueName = String(setup.queue.queueURL.split(separator: "/").last ?? "")
        let region = try await MotoServer.shared.start().region
        let event = QueueDispatchTests.sqsEvent(messages, queueARN: "arn:aws:sqs:\(region):123456789012:\(queueName)")
        let processed = try await Executables.run("process", environment: setup.environment, stdin: event)
        #expect(processed.exitCode == 0, "\(processed.stderr.suffix(800))")
        // Both records back, after one Graph call (no retries that would spend more of the limit).
        #expect(Set(QueueDispatchTests.failures(processed)) == Set(messages.compactMap { $0["MessageId"]?.string }))
        #expect(await setup.harness.graph.messages.count == 1)
        #expect(try await setup.harness.ledgerStatus("m_queued_limit_1") == "answering")
        #expect(processed.stderr.contains("records delayed"), "\(processed.stderr.suffix(800))")
        #expect(!processed.stderr.contains(H.token))
        // The queue's visibility timeout is 1 s: without the delay they would be back by now.
        try await Task.sleep(for: .milliseconds(1500))
        #expect(try await setup.queue.receive().isEmpty)
        await setup.harness.shutdown()
    }
}

import Essentials
import Foundation
import FunctionRuntime
import KeyValueStore
import MetaAgents
import MetaGraph
import MetaMessaging
import MetaTenancy
import MetaWebhooks
import Synchronization
import TestSupport
import Testing

/// Turns of different conversations answered at the same time (issue 33), in process: an
/// agent that holds every call until as many are in flight as the test expects shows how
/// many ran at once (sequential turns would never reach it), and never more than the bound.
@Suite struct ConcurrentTurnsTests {
    typealias H = FunctionHarness
    typealias W = HandlerRulesTests

    /// Holds each call until `together` calls have been in flight at once (or a safety
    /// timeout passes, which only a sequential answerer would meet); records the most seen and
    /// the order of each customer's messages.
    final class TogetherAgent: Agent {
        struct State {
            var inFlight = 0
            var most = 0
            var reached = false
            var turns: [[String]] = []
        }
        let together: Int
        let refusing: Set<String>
        let state = Mutex(State())

        init(together: Int, refusing: Set<String> = []) {
            self.together = together
            self.refusing = refusing
        }

        func reply(to request: AgentRequest, timeout: Duration) async throws(AgentError) -> AgentReply {
            state.withLock {
                $0.inFlight += 1
                $0.most = max($0.most, $0.inFlight)
                if $0.inFlight >= together { $0.reached = true }
                $0.turns.append(request.messageIds)
            }
            let end = ContinuousClock.now + .seconds(5)
            while !state.withLock({ $0.reached }), ContinuousClock.now < end {
                try? await Task.sleep(for: .milliseconds(2))
            }
            state.withLock { $0.inFlight -= 1 }
            if refusing.contains(request.senderId) {
                throw AgentError(.invalidResponse, "the agent refused this one")
            }
            return AgentReply(text: "re: \(request.messageId)")
        }

        var most: Int { state.withLock { $0.most } }
        var reached: Bool { state.withLock { $0.reached } }
        var turns: [[String]] { state.withLock { $0.turns } }
    }

    static func process(_ world: W.World, limit: Int) -> ProcessHandler {
        var process = world.process
        process.maxConcurrentTurns = limit
        return process
    }

    @Test func aBatchOfTenConversationsIsAnsweredAtOnce() async throws {
        let agent = TogetherAgent(together: 10)
        let world = try await W.world(agent: agent, senderActions: false)
        let customers = (1...10).map { "burst-\($0)" }
        try await world.harness.openWindows(customers: customers.map { (.instagram, $0) })
        let batch = try customers.map { try TenantShareTests.record(H.tenant, customer: $0) }
        let report = await Self.process(world, limit: 10).handle(records: batch, context: world.context())
        #expect(agent.reached, "the ten turns never ran at the same time")
        #expect(agent.most == 10)
        #expect(report.answered == 10)
        #expect(report.failures.isEmpty)
        #expect(Set(await TenantShareTests.recipients(world)) == Set(customers))
        await world.harness.shutdown()
    }

    @Test func aBusinessConnectionIsReadOnceForAWholeBatch() async throws {
        // No tenancy cache (as locally): ten conversations of one business at once still read
        // its connection once, not once per turn.
        let agent = TogetherAgent(together: 10)
        let world = try await W.world(agent: agent, senderActions: false)
        let store = RecordingStore(world.harness.store)
        let process = ProcessHandler(
            directory: TenantDirectory(store: store, tables: world.harness.tables), ledger: world.process.ledger, responder: world.process.responder)
        let customers = (1...10).map { "one-read-\($0)" }
        try await world.harness.openWindows(customers: customers.map { (.instagram, $0) })
        let batch = try customers.map { try TenantShareTests.record(H.tenant, customer: $0) }
        let report = await process.handle(records: batch, context: world.context())
        #expect(report.answered == 10)
        // The location's own item (absent here) and the business's: two reads for the batch.
        #expect(store.getsOf.withLock { $0[world.harness.tables.credentials.name] } == 2)

        // The next batch reads it again: a change is seen from one batch to the next.
        let again = try (1...3).map { try TenantShareTests.record(H.tenant, customer: "one-read-again-\($0)") }
        try await world.harness.openWindows(customers: (1...3).map { (.instagram, "one-read-again-\($0)") })
        #expect(await process.handle(records: again, context: world.context()).answered == 3)
        #expect(store.getsOf.withLock { $0[world.harness.tables.credentials.name] } == 4)
        await world.harness.shutdown()
    }

    @Test func aTurnWritesItsConversationOnceWithTheTimeReceiveAcceptedIt() async throws {
        // A new customer's turn: the service window (from receive's time, however late
        // process takes it) and Meta's name for them go in one write.
        let recording = Mutex<RecordingStore?>(nil)
        let world = try await W.world(
            senderActions: false,
            conversationStore: { store in
                let wrapped = RecordingStore(store)
                recording.withLock { $0 = wrapped }
                return wrapped
            })
        let store = try #require(recording.withLock { $0 })
        let customer = "new-customer-1"
        await world.harness.graph.setProfile(of: customer, ["name": "Ana Pop", "username": "ana.pop"])
        let acceptedAt = world.clock.now
        let record = try TenantShareTests.record(H.tenant, customer: customer, acceptedAt: acceptedAt)
        // process takes it two minutes later (a queue behind a burst).
        world.clock.advance(120)
        store.operations.withLock { $0 = [] }
        let context = world.context()
        let report = await world.process.handle(records: [record], context: context)
        await context.afterResponse.run(before: .now + .seconds(5))
        #expect(report.answered == 1)
        #expect(store.operations.withLock { $0 }.filter { $0.hasPrefix("update") || $0.hasPrefix("put") }.count == 1)
        let state = try await world.conversations.state(platform: .instagram, account: H.pageId, customer: customer)
        #expect(state.lastCustomerMessageAt == acceptedAt)
        #expect(state.customerName == "Ana Pop")
        #expect(state.profileCheckedAt == acceptedAt + 120)

        // An older message taken later never moves the time back, and its name still counts.
        try await world.conversations.customerWrote(
            platform: .instagram, account: H.pageId, customer: customer, businessId: H.tenant.businessId, at: acceptedAt - 60,
            profile: .init(name: "Ana P.", looked: true))
        let after = try await world.conversations.state(platform: .instagram, account: H.pageId, customer: customer)
        #expect(after.lastCustomerMessageAt == acceptedAt)
        #expect(after.customerName == "Ana P.")
        await world.harness.shutdown()
    }

    @Test func neverMoreTurnsAtOnceThanTheBound() async throws {
        let agent = TogetherAgent(together: 3)
        let world = try await W.world(agent: agent, senderActions: false)
        let customers = (1...9).map { "bound-\($0)" }
        try await world.harness.openWindows(customers: customers.map { (.instagram, $0) })
        let batch = try customers.map { try TenantShareTests.record(H.tenant, customer: $0) }
        let report = await Self.process(world, limit: 3).handle(records: batch, context: world.context())
        #expect(agent.most == 3)
        #expect(report.answered == 9)
        await world.harness.shutdown()
    }

    @Test func aConversationKeepsItsOrderAndAFailureLeavesTheOthersAlone() async throws {
        let agent = TogetherAgent(together: 3, refusing: ["refused"])
        let world = try await W.world(agent: agent, senderActions: false)
        try await world.harness.openWindows(customers: [(.instagram, "ordered"), (.instagram, "refused"), (.instagram, "other")])
        // One conversation: a message, a record that can never be read, then another message
        // of the same conversation, which must wait for (and go back with) what came before.
        let unreadable = try JSON.parse(
            Array(
                #"{"messageId":"record-broken","receiptHandle":"handle-broken","body":"not an accepted message","attributes":{"MessageGroupId":"\#(H.tenant.businessId)#instagram#ordered","ApproximateReceiveCount":"1"},"eventSource":"aws:sqs","eventSourceARN":"\#(TenantShareTests.queueARN)"}"#
                    .utf8))
        var later = try TenantShareTests.record(H.tenant, customer: "ordered")
        later = try JSON.parse(Array(later.encoded()).replacing(Array("m_share_ordered".utf8), with: Array("m_share_ordered_2".utf8)))
        later = try JSON.parse(Array(later.encoded()).replacing(Array("record-ordered".utf8), with: Array("record-ordered-2".utf8)))
        let batch = try [
            TenantShareTests.record(H.tenant, customer: "ordered"), TenantShareTests.record(H.tenant, customer: "refused"), unreadable,
            TenantShareTests.record(H.tenant, customer: "other"), later,
        ]
        let report = await Self.process(world, limit: 10).handle(records: batch, context: world.context())
        // The first message answered, the broken record and the one after it back, in order.
        #expect(report.failures == ["record-broken", "record-ordered-2"])
        #expect(try await world.ledger.status(of: "m_share_ordered") == .answered)
        #expect(try await world.ledger.status(of: "m_share_ordered_2") == nil)
        // The refusal is recorded for its own conversation only.
        #expect(try await world.ledger.status(of: "m_share_refused") == .failed)
        #expect(try await world.ledger.status(of: "m_share_other") == .answered)
        #expect(report.answered == 2)
        #expect(Set(await TenantShareTests.recipients(world)) == ["ordered", "other"])
        #expect(agent.most == 3)
        await world.harness.shutdown()
    }

    @Test func receiveAnswersADeliverysConversationsAtOnceWithinItsBound() async throws {
        for (limit, customers) in [(5, 5), (2, 6)] {
            let agent = TogetherAgent(together: min(limit, customers))
            var world = try await W.world(agent: agent, senderActions: false)
            world.receive.maxConcurrentTurns = limit
            let names = (1...customers).map { "inline-\(limit)-\($0)" }
            let body = H.messaging(
                events: names.enumerated().map { index, customer in
                    H.textEvent(mid: "m_inline_\(limit)_\(index)", text: "hi", sender: customer, timestamp: world.clock.nowMilliseconds + Int64(index))
                })
            let response = try await W.deliver(world, body)
            #expect(response.status == 200)
            #expect(W.summary(response)["answered"] as? Int == customers)
            #expect(agent.most == limit, "limit \(limit)")
            #expect(await world.harness.graph.messages.count == customers)
            await world.harness.shutdown()
        }
    }

    @Test func anAccountsSendsWaitForAPlaceBeyondTheGate() async throws {
        final class Count: Sendable {
            let value = Mutex((now: 0, most: 0))
        }
        let gate = AccountGate(permits: 2)
        let count = Count()
        try await withThrowingTaskGroup(of: Int.self) { group in
            for index in 0..<8 {
                group.addTask {
                    await gate.around("page-1") { () async -> Int in
                        count.value.withLock {
                            $0.now += 1
                            $0.most = max($0.most, $0.now)
                        }
                        try? await Task.sleep(for: .milliseconds(5))
                        count.value.withLock { $0.now -= 1 }
                        return index
                    }
                }
            }
            var done = 0
            for try await _ in group { done += 1 }
            #expect(done == 8)
        }
        #expect(count.value.withLock { $0.most } == 2)
        // Another account has places of its own.
        #expect(await gate.holding("page-1") == 0)
        await gate.enter("page-1")
        await gate.enter("page-1")
        await gate.enter("page-2")
        #expect(await gate.holding("page-2") == 1)
    }
}

/// Fewer requests per message (issue 33): a warm execution reads an account's route and a
/// location's connection once per `TENANCY_CACHE_SECONDS`, sees a change made through itself
/// at once and one made elsewhere within the lifetime, and never keeps what does not exist.
@Suite struct TenancyCacheTests {
    typealias H = FunctionHarness

    @Test func aRouteAndAConnectionAreReadOnceInTheirLifetime() async throws {
        let harness = try await H.make(.file)
        let store = RecordingStore(harness.store)
        let directory = TenantDirectory(store: store, tables: harness.tables, cache: TenancyCache(seconds: 5, clock: harness.clock.clock))
        func reads() -> Int { store.gets.withLock { $0 } }

        #expect(try await directory.route(identifier: H.pageId)?.tenant == H.tenant)
        #expect(try await directory.route(identifier: H.pageId)?.tenant == H.tenant)
        #expect(reads() == 1)
        let first = try #require(try await directory.credentials(tenant: H.tenant))
        let afterConnection = reads()
        #expect(try await directory.credentials(tenant: H.tenant)?.accessToken == first.accessToken)
        #expect(reads() == afterConnection)

        // Changed elsewhere: seen once the lifetime is over.
        let other = TenantDirectory(store: harness.store, tables: harness.tables)
        try await other.markNeedsReconnection(first, reason: "Graph API code 190")
        #expect(try await directory.credentials(tenant: H.tenant)?.isActive == true)
        harness.clock.advance(5)
        #expect(try await directory.credentials(tenant: H.tenant)?.isActive == false)

        // Changed through this directory: at once.
        try await directory.connect(tenant: H.tenant, pageId: H.pageId, instagramAccountId: H.instagramId, pageAccessToken: "page-token-new")
        #expect(try await directory.credentials(tenant: H.tenant)?.accessToken == "page-token-new")

        // What does not exist is read every time: a new connection answers its first message.
        let before = reads()
        #expect(try await directory.route(identifier: "999000999") == nil)
        #expect(try await directory.route(identifier: "999000999") == nil)
        #expect(reads() == before + 2)
        await harness.shutdown()
    }
}

/// The Graph stand-in holds accounts to Meta's documented Send API limit, and `process`
/// treats its refusal as the throttle it is.
@Suite struct SendLimitTests {
    typealias H = FunctionHarness
    typealias W = HandlerRulesTests

    @Test func callsPastAnAccountsLimitAreRefusedAndTheirTurnsComeBackLater() async throws {
        let world = try await W.world(senderActions: false)
        await world.harness.graph.limitSends(perSecond: 3)
        let customers = (1...5).map { "limited-\($0)" }
        try await world.harness.openWindows(customers: customers.map { (.instagram, $0) })
        let batch = try customers.map { try TenantShareTests.record(H.tenant, customer: $0) }
        let report = await world.process.handle(records: batch, context: world.context())
        // Three replies within the second; the other two go back, delayed: each met code 613,
        // or, when its turn started after the first 613 came back, was held back by the
        // throttle that refusal taught, without a call (the turns run at once: which, depends
        // on the machine).
        #expect(report.answered == 3)
        #expect(report.failures.count == 2)
        #expect(report.delayed.count == 2)
        #expect(report.delayed.allSatisfy { $0.seconds >= 1 })
        let rate = try #require(await world.harness.graph.sendRates[H.pageId])
        #expect(rate.most == 3)
        #expect((1...2).contains(rate.refused))
        #expect(await world.harness.graph.messages.count == 3 + rate.refused)
        await world.harness.shutdown()
    }
}

import Essentials
import Foundation
import FunctionRuntime
import KeyValueStore
import MetaMessaging
import TestSupport
import Testing

/// Each business's share of `process` (issue 23), in process: a business past its messages per
/// second waits its turn in the queue while the other businesses' messages in the same batch
/// are answered; nothing is lost on the way.
@Suite struct TenantShareTests {
    typealias H = FunctionHarness
    static let other = Tenant(businessId: "B0200002", locationId: "L0200002")
    static let queueARN = "arn:aws:sqs:eu-west-1:123456789012:process.fifo"

    /// A world whose `process` has a share of `perSecond`, and a second business on the same
    /// Instagram account (its own credentials item, the same token).
    /// The share's clock: the test moves it, from the real time (the file store honours its
    /// counters' TTL by the real time; the world's clock is fixed in the past).
    static func shareClock() -> HandlerRulesTests.TestClock {
        let clock = HandlerRulesTests.TestClock()
        clock.seconds.withLock { $0 = WallClock.epochSeconds() }
        return clock
    }

    static func world(
        perSecond: Int, customers: [String], clock: HandlerRulesTests.TestClock = shareClock()
    ) async throws -> (
        HandlerRulesTests.World, ProcessHandler
    ) {
        let world = try await HandlerRulesTests.world(senderActions: false)
        try await world.harness.store.put(
            world.harness.tables.credentials,
            item: [
                "businessId": .s(other.businessId), "serviceType": .s("meta"), "isActive": .bool(true),
                "credentials": .m(["accessToken": .s(H.token), "pageId": .s(H.pageId), "instagramAccountId": .s(H.instagramId)]),
            ])
        try await world.harness.openWindows(at: world.clock.seconds.withLock { $0 }, customers: customers.map { (.instagram, $0) })
        var process = world.process
        process.share = TenantShare(
            store: world.harness.store, table: world.harness.tables.processedMessages, perSecond: perSecond, clock: clock.clock)
        return (world, process)
    }

    /// An SQS record as Lambda delivers it, carrying a message `receive` accepted.
    static func record(_ tenant: Tenant, customer: String, receiveCount: Int = 1) throws -> JSON {
        let accepted = AcceptedMessage(
            tenant: tenant,
            message: InboundMessage(
                platform: .instagram, messageId: "m_share_\(customer)", accountId: H.instagramId, senderId: customer,
                timestamp: 1_795_687_200_000, content: .text("hello")))
        let body = String(decoding: try JSONEncoder().encode(accepted), as: UTF8.self)
        let record: [String: Any] = [
            "messageId": "record-\(customer)", "receiptHandle": "handle-\(customer)", "body": body,
            "attributes": ["MessageGroupId": "\(tenant.businessId)#instagram#\(customer)", "ApproximateReceiveCount": "\(receiveCount)"],
            "eventSource": "aws:sqs", "eventSourceARN": queueARN,
        ]
        return try JSON.parse(Array(try JSONSerialization.data(withJSONObject: record)))
    }

    static func recipients(_ world: HandlerRulesTests.World) async -> [String] {
        await world.harness.graph.messages.compactMap { ($0.body?["recipient"] as? [String: Any])?["id"] as? String }
    }

    @Test func aBusinessPastItsShareWaitsItsTurnWhileTheOthersPass() async throws {
        let customers = (1...9).map { "c\($0)" }
        let clock = Self.shareClock()
        let (world, process) = try await Self.world(perSecond: 2, customers: customers, clock: clock)
        let a = H.tenant
        let b = Self.other
        // Six customers of A and two of B in one batch, A's first.
        let batch = try [
            Self.record(a, customer: "c1"), Self.record(a, customer: "c2"), Self.record(a, customer: "c3"), Self.record(b, customer: "c7"),
            Self.record(a, customer: "c4"), Self.record(a, customer: "c5"), Self.record(b, customer: "c8"), Self.record(a, customer: "c6"),
        ]
        let report = await process.handle(records: batch, context: HandlerRulesTests.context())
        // A's first two and both of B's are answered; A's other four go back, and come round
        // at A's share: two in 1 s, two in 2 s.
        #expect(Set(await Self.recipients(world)) == ["c1", "c2", "c7", "c8"])
        #expect(report.answered == 4)
        #expect(report.deferred == 4)
        #expect(report.failures == ["record-c3", "record-c4", "record-c5", "record-c6"])
        #expect(report.delayed.map(\.recordId) == report.failures)
        #expect(report.delayed.map(\.seconds) == [1, 1, 2, 2])
        #expect(report.delayed.allSatisfy { $0.queueARN == Self.queueARN && $0.receiptHandle.hasPrefix("handle-") })
        // Nothing of the deferred ones was claimed: they are answered when they come back.
        #expect(try await world.ledger.status(of: "m_share_c3") == nil)

        // Later in the same second, A's next message waits behind the four.
        let later = await process.handle(records: [try Self.record(a, customer: "c9")], context: HandlerRulesTests.context())
        #expect(later.delayed.map(\.seconds) == [3])

        // A second on, the first deferred ones come back (received twice now) and are answered.
        clock.advance(1)
        let back = await process.handle(
            records: [try Self.record(a, customer: "c3", receiveCount: 2), try Self.record(a, customer: "c4", receiveCount: 2)],
            context: HandlerRulesTests.context())
        #expect(back.answered == 2)
        #expect(back.failures.isEmpty)
        #expect(Set(await Self.recipients(world)) == ["c1", "c2", "c7", "c8", "c3", "c4"])

        // In a second already full, a message deferred its most is answered anyway: deferrals
        // alone never take a message to the dead-letter queue.
        let full = await process.handle(
            records: [try Self.record(a, customer: "c5", receiveCount: TenantShare.maxDeferrals + 1)], context: HandlerRulesTests.context())
        #expect(full.answered == 1)
        #expect(full.deferred == 0)
        await world.harness.shutdown()
    }

    @Test func aShareThatCannotBeCountedLetsEveryMessageThrough() async throws {
        let (world, healthy) = try await Self.world(perSecond: 1, customers: ["c1", "c2", "c3"])
        var process = healthy
        // A table that is not there: the counter fails, and fairness is lost, not messages.
        process.share = TenantShare(
            store: world.harness.store, table: TableSchema(name: "no-such-table", partitionKey: "messageId"), perSecond: 1)
        let batch = try ["c1", "c2", "c3"].map { try Self.record(H.tenant, customer: $0) }
        let report = await process.handle(records: batch, context: HandlerRulesTests.context())
        #expect(report.answered == 3)
        #expect(report.failures.isEmpty)
        #expect(await world.harness.graph.messages.count == 3)
        await world.harness.shutdown()
    }

    @Test func theCounterLivesTwoMinutesAndCountsEveryExecution() async throws {
        let clock = Self.shareClock()
        let (world, _) = try await Self.world(perSecond: 3, customers: [], clock: clock)
        let share = TenantShare(store: world.harness.store, table: world.harness.tables.processedMessages, perSecond: 3, clock: clock.clock)
        let logger = HandlerRulesTests.context().logger
        // Two executions at once, four messages each: three start, whoever asks first.
        async let first = share.admit(4, businessId: "B1", logger: logger)
        async let second = share.admit(4, businessId: "B1", logger: logger)
        let admissions = await [first, second]
        #expect(admissions.map(\.admitted).reduce(0, +) == 3)
        #expect(admissions.flatMap(\.waits).sorted() == [1, 1, 1, 2, 2])
        // Another business is counted apart.
        #expect(await share.admit(3, businessId: "B2", logger: logger) == .all(3))
        let now = clock.seconds.withLock { $0 }
        let counter = try await world.harness.store.get(world.harness.tables.processedMessages, key: ["messageId": .s("share:B1:\(now)")])
        #expect(counter?["started"] == .n("8"))
        #expect(counter?["expiresAt"] == .number(now + 120))
        await world.harness.shutdown()
    }
}

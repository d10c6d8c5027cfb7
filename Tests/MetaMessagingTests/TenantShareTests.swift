import Essentials
import Foundation
import FunctionRuntime
import KeyValueStore
import MetaMessaging
import MetaTenancy
import MetaWebhooks
import Synchronization
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
    static func world(
        perSecond: Int, customers: [String], backend: StoreBackend = .file
    ) async throws -> (
        HandlerRulesTests.World, ProcessHandler
    ) {
        let world = try await HandlerRulesTests.world(backend: backend, senderActions: false)
        try await world.harness.store.put(
            world.harness.tables.credentials,
            item: [
                "businessId": .s(other.businessId), "serviceType": .s("meta"), "isActive": .bool(true),
                "credentials": .m(["accessToken": .s(H.token), "pageId": .s(H.pageId), "instagramAccountId": .s(H.instagramId)]),
            ])
        try await world.harness.openWindows(at: world.clock.now, customers: customers.map { (.instagram, $0) })
        var process = world.process
        process.share = TenantShare(
            store: world.harness.store, table: world.harness.tables.processedMessages, perSecond: perSecond, now: world.clock.epochMilliseconds)
        return (world, process)
    }

    /// An SQS record as Lambda delivers it, carrying a message `receive` accepted.
    static func record(_ tenant: Tenant, customer: String, receiveCount: Int = 1, acceptedAt: Int64? = nil) throws -> JSON {
        let accepted = AcceptedMessage(
            tenant: tenant,
            message: InboundMessage(
                platform: .instagram, messageId: "m_share_\(customer)", accountId: H.instagramId, senderId: customer,
                timestamp: WallClock.epochMilliseconds(), content: .text("hello")),
            acceptedAt: acceptedAt)
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
        let customers = (1...11).map { "c\($0)" }
        let (world, process) = try await Self.world(perSecond: 2, customers: customers)
        let clock = world.clock
        let a = H.tenant
        let b = Self.other
        // Six customers of A and two of B in one batch, A's first.
        let batch = try [
            Self.record(a, customer: "c1"), Self.record(a, customer: "c2"), Self.record(a, customer: "c3"), Self.record(b, customer: "c7"),
            Self.record(a, customer: "c4"), Self.record(a, customer: "c5"), Self.record(b, customer: "c8"), Self.record(a, customer: "c6"),
        ]
        let report = await process.handle(records: batch, context: world.context())
        // A's first two and both of B's are answered; A's other four go back until their slots
        // at A's share of two a second: 1, 1.5, 2 and 2.5 s from now.
        #expect(Set(await Self.recipients(world)) == ["c1", "c2", "c7", "c8"])
        #expect(report.answered == 4)
        #expect(report.deferred == 4)
        #expect(report.failures == ["record-c3", "record-c4", "record-c5", "record-c6"])
        #expect(report.delayed.map(\.recordId) == report.failures)
        #expect(report.delayed.map(\.seconds) == [1, 2, 2, 3])
        #expect(report.delayed.allSatisfy { $0.queueARN == Self.queueARN && $0.receiptHandle.hasPrefix("handle-") })
        // Nothing of the deferred ones was claimed: they are answered when they come back.
        #expect(try await world.ledger.status(of: "m_share_c3") == nil)

        // Later in the same second, A's next message waits behind the four, for the slot at 3 s.
        let later = await process.handle(records: [try Self.record(a, customer: "c9")], context: world.context())
        #expect(later.delayed.map(\.seconds) == [3])

        // A second on, the first deferred ones come back (received twice now) with their slots:
        // answered, without taking new ones.
        clock.advance(milliseconds: 1000)
        let back = await process.handle(
            records: [try Self.record(a, customer: "c3", receiveCount: 2), try Self.record(a, customer: "c4", receiveCount: 2)],
            context: world.context())
        #expect(back.answered == 2)
        #expect(back.failures.isEmpty)
        #expect(Set(await Self.recipients(world)) == ["c1", "c2", "c7", "c8", "c3", "c4"])

        // A new message of A still waits behind the whole line (the slot after c9's, 3.5 s
        // from the start, 2.5 s from now), while B's goes at once: B's schedule is its own.
        let next = await process.handle(
            records: [try Self.record(a, customer: "c10"), try Self.record(b, customer: "c11")], context: world.context())
        #expect(next.delayed.map(\.seconds) == [3])
        #expect(next.failures == ["record-c10"])
        #expect(await Self.recipients(world).last == "c11")
        await world.harness.shutdown()
    }

    @Test func aShareThatCannotBeCountedLetsEveryMessageThrough() async throws {
        let (world, healthy) = try await Self.world(perSecond: 1, customers: ["c1", "c2", "c3"])
        var process = healthy
        // A table that is not there: the counter fails, and fairness is lost, not messages.
        process.share = TenantShare(
            store: world.harness.store, table: TableSchema(name: "no-such-table", partitionKey: "messageId"), perSecond: 1)
        let batch = try ["c1", "c2", "c3"].map { try Self.record(H.tenant, customer: $0) }
        let report = await process.handle(records: batch, context: world.context())
        #expect(report.answered == 3)
        #expect(report.failures.isEmpty)
        #expect(await world.harness.graph.messages.count == 3)
        await world.harness.shutdown()
    }

    @Test(arguments: StoreBackend.allCases)
    func everyExecutionTakesSlotsFromOneScheduleThatAQuietBusinessStartsAfresh(_ backend: StoreBackend) async throws {
        let (world, _) = try await Self.world(perSecond: 3, customers: [], backend: backend)
        let clock = world.clock
        let share = TenantShare(store: world.harness.store, table: world.harness.tables.processedMessages, perSecond: 3, now: clock.epochMilliseconds)
        let logger = world.context().logger
        // Eight executions at once, four messages each: each takes the next four slots, three
        // start within the second, and the 29 others wait for theirs, each slot given once.
        let admissions = await withTaskGroup(of: TenantShare.Admission.self) { group in
            for _ in 0..<8 { group.addTask { await share.admit(4, businessId: "B1", logger: logger) } }
            return await group.reduce(into: []) { $0.append($1) }
        }
        #expect(admissions.map(\.admitted).reduce(0, +) == 3)
        // Slot k (from 0) starts k/3 s from now: a wait of ceil(k/3) s for k = 3...31.
        #expect(admissions.flatMap(\.waits).sorted() == (3..<32).map { ($0 + 2) / 3 })
        // Another business has a schedule of its own.
        #expect(await share.admit(3, businessId: "B2", logger: logger) == .all(3))
        let start = clock.nowMilliseconds
        let schedule = try await world.harness.store.get(world.harness.tables.processedMessages, key: ["messageId": .s("share:B1")])
        #expect(schedule?["nextSlot"] == .n(String(start * 1000 + 8 * 1_333_333)))
        // Quiet for a minute, B1 starts afresh: the slots it did not use are not saved up.
        clock.advance(milliseconds: 60_000)
        #expect(await share.admit(4, businessId: "B1", logger: logger) == TenantShare.Admission(admitted: 3, waits: [1]))
        await world.harness.shutdown()
    }
}

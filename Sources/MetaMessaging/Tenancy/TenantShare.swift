import Essentials
import KeyValueStore
import Logging

/// Each business's share of `process` (issue 23): at most `perSecond` messages of one business
/// start being answered in any one second, counted across every execution in one shared counter
/// per business and second (`share:<businessId>:<second>` in the processed-messages table, kept
/// two minutes). The messages over the share go back to the queue for as long as the business's
/// own line ahead of them takes at its share, so one business's flood waits behind itself while
/// the other businesses' messages pass it.
///
/// The share never costs a message: when the counter cannot be reached every message goes
/// ahead (fairness is lost for that batch, nothing else), and a message already received
/// `maxDeferrals` times goes ahead whatever the count, so deferrals alone never take it to the
/// dead-letter queue (the queue's maxReceiveCount leaves room for them).
public struct TenantShare: Sendable {
    public let store: any KeyValueStore
    public let table: TableSchema
    /// Messages of one business started per second; 0 turns the share off.
    public let perSecond: Int
    public let clock: WallClock
    /// A message received this many times is no longer deferred.
    public static let maxDeferrals = 3
    /// The longest a message is sent back for at once (SQS allows 12 hours; a longer line
    /// comes round again and is deferred again, up to `maxDeferrals` times).
    public static let maxWaitSeconds = 300

    public init(store: any KeyValueStore, table: TableSchema, perSecond: Int, clock: WallClock = .system) {
        self.store = store
        self.table = table
        self.perSecond = max(0, perSecond)
        self.clock = clock
    }

    /// What `admit` decided for a business's messages in one batch.
    public struct Admission: Sendable, Equatable {
        /// How many may start now.
        public let admitted: Int
        /// For each message past those, in order, the seconds it waits before coming back.
        public let waits: [Int]

        public static func all(_ count: Int) -> Admission { Admission(admitted: count, waits: []) }
    }

    /// Counts `count` messages of `businessId` as asking to start this second and says how many
    /// may. The k-th message over the share in a second waits ceil(k / perSecond) seconds: by
    /// then the business's line ahead of it has started at its share.
    public func admit(_ count: Int, businessId: String, logger: Logger) async -> Admission {
        guard perSecond > 0, count > 0 else { return .all(count) }
        let second = clock.epochSeconds()
        let item: Item
        do {
            item = try await store.increment(
                table, key: ["messageId": .s("share:\(businessId):\(second)")], attribute: "started", by: Int64(count),
                set: ["businessId": .s(businessId), "expiresAt": .number(second + 120)])
        } catch {
            logger.warning("the tenant share could not be counted: every message goes ahead", metadata: ["error": "\(error)"])
            return .all(count)
        }
        // The counter is ours, but read it as any stored number: bounded before any arithmetic.
        guard case .n(let text)? = item["started"], let stored = Int64(text) else { return .all(count) }
        let total = min(max(stored, Int64(count)), 1 << 40)
        let before = total - Int64(count)
        let share = Int64(perSecond)
        let admitted = Int(min(Int64(count), max(0, share - before)))
        let waits = (admitted..<count).map { index -> Int in
            let past = before + Int64(index) - share + 1  // this message's place past the share, from 1
            return Int(min(Int64(Self.maxWaitSeconds), (past + share - 1) / share))
        }
        return Admission(admitted: admitted, waits: waits)
    }
}

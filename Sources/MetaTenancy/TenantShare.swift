import Essentials
import KeyValueStore
import Logging
import MetaWebhooks

/// Each business's share of `process` (issue 23): its messages start being answered at most
/// `perSecond` a second, across every execution, and the rest wait their turn in the queue, so
/// one business's flood waits behind itself while the other businesses' messages pass it.
///
/// The schedule is a rate limiter in the manner of the generic cell rate algorithm: one item per
/// business (`share:<businessId>` in the processed-messages table) keeps the time its next slot
/// starts, in microseconds. A message seen for the first time takes the next slot; it starts now if its slot
/// begins within a second (a quiet business's messages all start at once), and otherwise goes
/// back to the queue until its slot (at most `maxWaitSeconds`). A message that comes back has
/// its slot already and goes ahead without taking another; so a flood is passed over once,
/// each of its messages sent back once for as long as the business's line ahead of it takes.
///
/// The share never costs a message: when the schedule cannot be written every message
/// goes ahead (fairness is lost for that batch, nothing else), and a message is sent back for
/// its share at most once, so the share alone never takes it to the dead-letter queue.
public struct TenantShare: Sendable {
    public let store: any KeyValueStore
    public let table: TableSchema
    /// Messages of one business started per second.
    public let perSecond: Int
    /// Milliseconds since 1970 (the tests set it).
    public let now: @Sendable () -> Int64
    /// The longest a message waits for its slot. Its slot may be later still when a business is
    /// more than this far behind: it comes back and goes ahead then, so beyond it the share
    /// bounds how long a message waits, not how fast its business goes.
    public static let maxWaitSeconds: Int64 = 900

    public init(store: any KeyValueStore, table: TableSchema, perSecond: Int, now: @escaping @Sendable () -> Int64 = WallClock.epochMilliseconds) {
        self.store = store
        self.table = table
        self.perSecond = max(1, perSecond)
        self.now = now
    }

    /// What `admit` decided for a business's messages in one batch.
    public struct Admission: Sendable, Equatable {
        /// How many may start now (the first ones).
        public let admitted: Int
        /// For each message past those, in order, the seconds it waits for its slot.
        public let waits: [Int]

        public init(admitted: Int, waits: [Int]) {
            self.admitted = admitted
            self.waits = waits
        }

        public static func all(_ count: Int) -> Admission { Admission(admitted: count, waits: []) }
    }

    /// Gives `count` new messages of `businessId` the business's next slots: two writes, with
    /// no read and no race to lose. The first moves a schedule that has fallen behind the clock
    /// to now (a quiet business does not save up slots); the second takes the slots with
    /// DynamoDB's atomic `ADD`, so executions at the same moment get slots one after another.
    public func admit(_ count: Int, businessId: String, logger: Logger) async -> Admission {
        guard count > 0 else { return .all(count) }
        let key: Item = ["messageId": .s("share:\(businessId)")]
        let share = Int64(perSecond)
        let nowMicros = now() * 1000
        let expiresAt: AttributeValue = .number(nowMicros / 1_000_000 + Self.maxWaitSeconds + 3600)
        do {
            try await store.update(
                table, key: key, set: ["nextSlot": .n(String(nowMicros)), "businessId": .s(businessId), "expiresAt": expiresAt],
                condition: .or(.attributeAbsent("nextSlot"), .lessThan("nextSlot", .n(String(nowMicros)))))
        } catch {
            if error.code != .conditionFailed {  // conditionFailed: the schedule is ahead of the clock
                logger.warning("the tenant share could not be written: every message goes ahead", metadata: ["error": "\(error)"])
                return .all(count)
            }
        }
        let taken = Int64(count) * 1_000_000 / share  // microseconds of slots
        let item: Item
        do {
            item = try await store.increment(table, key: key, attribute: "nextSlot", by: taken, set: ["expiresAt": expiresAt])
        } catch {
            logger.warning("the tenant share could not be written: every message goes ahead", metadata: ["error": "\(error)"])
            return .all(count)
        }
        // Ours, but read as any stored number: bounded before any arithmetic. A schedule further
        // ahead than the longest wait is treated as that far ahead.
        guard case .n(let text)? = item["nextSlot"], let after = Int64(text) else { return .all(count) }
        let horizon = nowMicros + Self.maxWaitSeconds * 1_000_000
        let first = min(max(after - taken, nowMicros), horizon)
        // Slot k of this batch starts k / perSecond seconds after its first; a slot within the
        // coming second starts now, a later one waits for it.
        let slots = (0..<count).map { first + Int64($0) * 1_000_000 / share }
        let admitted = slots.prefix { $0 < nowMicros + 1_000_000 }.count
        let waits = slots.dropFirst(admitted).map { slot in
            Int(min(Self.maxWaitSeconds, max(1, (slot - nowMicros + 999_999) / 1_000_000)))
        }
        return Admission(admitted: admitted, waits: waits)
    }
}

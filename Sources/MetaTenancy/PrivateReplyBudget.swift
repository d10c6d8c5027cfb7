import Essentials
import KeyValueStore
import MetaWebhooks

/// Meta's own limit on private replies (Messenger Platform "Rate limits", Private Replies API:
/// 750 calls per hour per Page), counted across every execution: one atomic increment per
/// private reply on the processed-messages table (`private-replies:<account>:<hour>`, TTL an
/// hour past that hour). Over it, the comment waits for the next hour instead of spending a
/// call Meta would refuse.
public struct PrivateReplyBudget: Sendable {
    public let store: any KeyValueStore
    public let table: TableSchema
    public let perHour: Int64
    public let clock: WallClock

    public static let metaPerHour: Int64 = 750

    public init(store: any KeyValueStore, table: TableSchema, perHour: Int64 = metaPerHour, clock: WallClock = .system) {
        self.store = store
        self.table = table
        self.perHour = perHour
        self.clock = clock
    }

    /// Takes one private reply of `account`'s hour: nil when it may go, else the seconds until
    /// the next hour. A store that cannot count lets it go (Meta's refusal is the backstop).
    public func take(_ account: String) async -> Int? {
        let now = clock.epochSeconds()
        let hour = now / 3600
        let key: Item = ["messageId": .s("private-replies:\(account):\(hour)")]
        guard
            let count = try? await store.increment(
                table, key: key, attribute: "count", by: 1, set: ["expiresAt": .number((hour + 2) * 3600)])["count"]?.int
        else { return nil }
        guard count > perHour else { return nil }
        return Int((hour + 1) * 3600 - now)
    }
}

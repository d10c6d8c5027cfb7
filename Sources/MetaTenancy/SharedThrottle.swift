import Essentials
import KeyValueStore
import Logging
import MetaGraph
import MetaWebhooks
import Synchronization

/// Meta's throttle of an account, known to every execution: a pause one execution learns (a
/// throttling code or the usage headers, on a reply, a sender action or a profile lookup) is
/// written to the processed-messages table (`throttle:<account>`, `until`, TTL an hour past
/// it), and an execution reads it before it runs an account's agent, at most once per
/// account every `refreshSeconds` (so at most once per account per batch). What it reads
/// joins the execution's own `AccountThrottle`, which decides.
public final class SharedThrottle: Sendable {
    public let store: any KeyValueStore
    public let table: TableSchema
    public let throttle: AccountThrottle
    public let refreshSeconds: Int64
    private let lastRead = Mutex<[String: Int64]>([:])

    public init(store: any KeyValueStore, table: TableSchema, throttle: AccountThrottle, refreshSeconds: Int64 = 5) {
        self.store = store
        self.table = table
        self.throttle = throttle
        self.refreshSeconds = refreshSeconds
    }

    static func key(_ account: String) -> Item { ["messageId": .s("throttle:\(account)")] }

    /// Reads the account's shared pause, unless this execution read it within `refreshSeconds`.
    /// A failed read changes nothing (the send itself still meets Meta's answer).
    public func refresh(_ account: String, logger: Logger) async {
        let now = throttle.now
        let due = lastRead.withLock { read in
            if let last = read[account], now - last < refreshSeconds { return false }
            read[account] = now
            return true
        }
        guard due else { return }
        do {
            if let until = try await store.get(table, key: Self.key(account))?["until"]?.int {
                throttle.seed(account, until: until)
            }
        } catch {
            logger.warning("the shared throttle could not be read", metadata: ["error": "\(error)"])
        }
    }

    /// Writes the pauses this execution learned (a later pause never shortens an earlier one).
    public func share(logger: Logger) async {
        for (account, until) in throttle.takeUnshared() {
            var item = Self.key(account)
            item["status"] = .s("throttle")
            item["until"] = .number(until)
            item["expiresAt"] = .number(until + 3600)
            do {
                try await store.put(table, item: item, condition: .or(.itemAbsent, .lessThan("until", .number(until))))
            } catch  where error.code == .conditionFailed {
                continue
            } catch {
                logger.warning("the throttle could not be shared with the other executions", metadata: ["error": "\(error)"])
            }
        }
    }
}

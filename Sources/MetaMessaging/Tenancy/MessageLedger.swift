import Essentials
import KeyValueStore

/// The exactly-once ledger (`meta-processed-messages`): one record per inbound message id,
/// claimed by a conditional write before any agent runs, so however often Meta redelivers a
/// message, and however many deliveries of it run at once, one invocation answers it.
///
/// A claim carries a lease: a claimer that crashes mid-way leaves a record whose lease
/// expires, and the next delivery (Meta's retry, SQS's redelivery) takes it over instead of
/// the message being blocked forever. Records expire through the table's TTL (`expiresAt`).
public struct MessageLedger: Sendable {
    public enum Status: String, Sendable, Equatable {
        /// Accepted by `receive` and put on the queue for `process` (RECEIVE_DISPATCH=sqs).
        case queued
        /// Someone is running the agent and sending the reply (under a lease).
        case answering
        case answered
        /// The agent or the Graph API failed for good; not retried.
        case failed
    }

    public enum Claim: Sendable, Equatable {
        case claimed
        /// Another claimer holds the message, or it is done: the status it has.
        case taken(Status?)
    }

    public let store: any KeyValueStore
    public let table: TableSchema
    public let clock: WallClock
    /// How long a record is kept (DynamoDB TTL): longer than Meta retries a delivery.
    public let retentionSeconds: Int64
    /// How long a claimer may hold a message before another may take it over.
    public let leaseSeconds: Int64

    public init(
        store: any KeyValueStore, table: TableSchema, clock: WallClock = .system,
        retentionSeconds: Int64 = 7 * 24 * 3600, leaseSeconds: Int64 = 60
    ) {
        self.store = store
        self.table = table
        self.clock = clock
        self.retentionSeconds = retentionSeconds
        self.leaseSeconds = leaseSeconds
    }

    /// Claims `messageId` with `status` if no one has it yet, if an `answering` claim's lease
    /// has run out, or if its status is one of `claimable`.
    public func claim(
        _ messageId: String, businessId: String, owner: String, as status: Status, claimable: [Status] = []
    ) async throws(KeyValueError) -> Claim {
        let now = clock.epochSeconds()
        var condition: Condition = .or(
            .itemAbsent,
            .and(
                .equals("status", .s(Status.answering.rawValue)), .lessThan("leaseUntil", .number(now))))
        for other in claimable { condition = .or(condition, .equals("status", .s(other.rawValue))) }
        let item: Item = [
            "messageId": .s(messageId), "status": .s(status.rawValue), "businessId": .s(businessId),
            "owner": .s(owner), "leaseUntil": .number(now + leaseSeconds), "expiresAt": .number(now + retentionSeconds),
            "updatedAt": .s(ISO8601.format(epochSeconds: now)),
        ]
        do {
            try await store.put(table, item: item, condition: condition)
            return .claimed
        } catch  where error.code == .conditionFailed {
            // Our own earlier attempt may have landed before a retried request: read it back.
            let current = try await store.get(table, key: ["messageId": .s(messageId)])
            if current?["owner"]?.string == owner, current?["status"]?.string == status.rawValue { return .claimed }
            return .taken(current?["status"]?.string.flatMap(Status.init(rawValue:)))
        }
    }

    /// Records the outcome, if `owner` still holds the claim. Returns false when another
    /// claimer took the message over meanwhile.
    @discardableResult
    public func finish(_ messageId: String, owner: String, status: Status, detail: String? = nil) async throws(KeyValueError) -> Bool {
        var set: Item = ["status": .s(status.rawValue), "updatedAt": .s(ISO8601.format(epochSeconds: clock.epochSeconds()))]
        if let detail { set["detail"] = .s(detail) }
        do {
            try await store.update(
                table, key: ["messageId": .s(messageId)], set: set, remove: ["leaseUntil"],
                condition: .equals("owner", .s(owner)))
            return true
        } catch  where error.code == .conditionFailed {
            return false
        }
    }

    /// Gives a claim up at once (the work could not be done now and must be possible on the
    /// next delivery): the record becomes an `answering` claim whose lease has run out.
    public func release(_ messageId: String, owner: String) async throws(KeyValueError) {
        do {
            try await store.update(
                table, key: ["messageId": .s(messageId)],
                set: ["status": .s(Status.answering.rawValue), "leaseUntil": .number(0)], remove: [],
                condition: .equals("owner", .s(owner)))
        } catch  where error.code == .conditionFailed {
            return
        }
    }

    public func status(of messageId: String) async throws(KeyValueError) -> Status? {
        try await store.get(table, key: ["messageId": .s(messageId)])?["status"]?.string.flatMap(Status.init(rawValue:))
    }
}

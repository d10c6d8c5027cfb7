import Essentials
import KeyValueStore
import MetaWebhooks

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
        /// Someone is running the agent (under a lease).
        case answering
        /// A reply is being sent (under the same lease): written just before the Send API call,
        /// so a claimer that dies between Meta taking the reply and the outcome being written
        /// leaves a record that says a reply may have gone out.
        case sending
        case answered
        /// A claimer died (or lost the store) while sending a reply, so whether the customer got
        /// it is unknown; the in-doubt rule said not to send it again (final).
        case unconfirmed
        /// Accepted while a person had the conversation: recorded, not answered (final).
        case paused
        /// The agent or the Graph API failed for good; not retried.
        case failed
    }

    public enum Claim: Sendable, Equatable {
        case claimed
        /// Taken over from a claimer whose lease ran out while it was sending a reply: the
        /// customer may have that reply already. Claimed because the in-doubt rule allows a
        /// possible duplicate (`InDoubt.sendAgain`).
        case claimedInDoubt
        /// The same, but the rule says not to send again: now recorded `unconfirmed` (final).
        case settledInDoubt
        /// Another claimer holds the message under a live lease (`answering` or `sending`): not
        /// done, so the delivery must come again (a crash leaves the lease to run out).
        case held(Status)
        /// Its outcome is final, or it waits in the queue: the status it has.
        case taken(Status?)
    }

    /// What a redelivery does with a message whose reply may have gone out (its claimer died,
    /// or lost the store, between marking it `sending` and recording what Meta answered). The
    /// Send API has no idempotency key, so this window cannot be closed, only chosen for.
    public enum InDoubt: String, Sendable, Equatable {
        /// Never sent again: at most one reply, and a reply lost in the (microseconds) window
        /// between the mark and the request stays unsent. The default: nearly every death in
        /// that window comes after Meta took the reply, whose answer takes far longer than the
        /// step from the mark to the request.
        case doNotSendAgain = "skip"
        /// Sent again: at least one reply, and a possible duplicate.
        case sendAgain = "resend"
    }

    public let store: any KeyValueStore
    public let table: TableSchema
    public let clock: WallClock
    /// How long a record is kept (DynamoDB TTL): longer than Meta retries a delivery.
    public let retentionSeconds: Int64
    /// How long a claimer may hold a message before another may take it over.
    public let leaseSeconds: Int64
    /// The rule for a reply that may have gone out (`REPLY_IN_DOUBT`).
    public let inDoubt: InDoubt

    public init(
        store: any KeyValueStore, table: TableSchema, clock: WallClock = .system,
        retentionSeconds: Int64 = 7 * 24 * 3600, leaseSeconds: Int64 = 60, inDoubt: InDoubt = .doNotSendAgain
    ) {
        self.store = store
        self.table = table
        self.clock = clock
        self.retentionSeconds = retentionSeconds
        self.leaseSeconds = leaseSeconds
        self.inDoubt = inDoubt
    }

    /// Claims `messageId` with `status` if no one has it yet, if an `answering` claim's lease
    /// has run out, or if its status is one of `claimable`. A `sending` claim whose lease ran
    /// out follows the in-doubt rule: claimed again (`claimedInDoubt`) or settled
    /// `unconfirmed` (`settledInDoubt`). A claim whose lease still runs is `held`.
    public func claim(
        _ messageId: String, businessId: String, owner: String, as status: Status, claimable: [Status] = []
    ) async throws(KeyValueError) -> Claim {
        let now = clock.epochSeconds()
        var condition: Condition = .or(
            .itemAbsent,
            .and(
                .equals("status", .s(Status.answering.rawValue)), .lessThan("leaseUntil", .number(now))))
        for other in claimable { condition = .or(condition, .equals("status", .s(other.rawValue))) }
        let item = claimItem(messageId, businessId: businessId, owner: owner, status: status, now: now)
        do {
            try await store.put(table, item: item, condition: condition)
            return .claimed
        } catch  where error.code == .conditionFailed {
            // Our own earlier attempt may have landed before a retried request: read it back.
            let current = try await store.get(table, key: ["messageId": .s(messageId)])
            if current?["owner"]?.string == owner, current?["status"]?.string == status.rawValue { return .claimed }
            let found = current?["status"]?.string.flatMap(Status.init(rawValue:))
            let leaseRuns = (current?["leaseUntil"]?.int).map { $0 >= now } ?? false
            switch found {
            case .answering? where leaseRuns, .sending? where leaseRuns:
                return .held(found ?? .answering)
            case .sending?:
                return try await settleInDoubt(messageId, businessId: businessId, owner: owner, as: status, now: now)
            default:
                return .taken(found)
            }
        }
    }

    private func claimItem(_ messageId: String, businessId: String, owner: String, status: Status, now: Int64) -> Item {
        [
            "messageId": .s(messageId), "status": .s(status.rawValue), "businessId": .s(businessId),
            "owner": .s(owner), "leaseUntil": .number(now + leaseSeconds), "expiresAt": .number(now + retentionSeconds),
            "updatedAt": .s(ISO8601.format(epochSeconds: now)),
        ]
    }

    /// A `sending` record whose lease ran out: its claimer died (or lost the store) after
    /// marking it and before recording what Meta answered. The rule decides, once: whoever
    /// makes the conditional write first.
    private func settleInDoubt(
        _ messageId: String, businessId: String, owner: String, as status: Status, now: Int64
    ) async throws(KeyValueError) -> Claim {
        let stillInDoubt: Condition = .and(.equals("status", .s(Status.sending.rawValue)), .lessThan("leaseUntil", .number(now)))
        do {
            switch inDoubt {
            case .sendAgain:
                var item = claimItem(messageId, businessId: businessId, owner: owner, status: status, now: now)
                item["inDoubt"] = .s("sent again")
                try await store.put(table, item: item, condition: stillInDoubt)
                return .claimedInDoubt
            case .doNotSendAgain:
                _ = try await store.update(
                    table, key: ["messageId": .s(messageId)],
                    set: [
                        "status": .s(Status.unconfirmed.rawValue), "updatedAt": .s(ISO8601.format(epochSeconds: now)),
                        "detail": .s("a reply may have been sent (its sender stopped before Meta's answer was recorded): not sent again"),
                    ], remove: ["leaseUntil"], condition: stillInDoubt)
                return .settledInDoubt
            }
        } catch  where error.code == .conditionFailed {
            // Another delivery settled it first: what it made of it.
            let current = try await store.get(table, key: ["messageId": .s(messageId)])
            let found = current?["status"]?.string.flatMap(Status.init(rawValue:))
            if found == .answering || found == .sending { return .held(found ?? .answering) }
            return .taken(found)
        }
    }

    /// Marks the claimed messages `sending`, just before the first Send API call of their
    /// reply (one write to the table). Per claim, in order: whether its owner still held it.
    /// Nothing is sent unless every claim of the turn is marked.
    public func markSending(_ claims: [(messageId: String, owner: String)]) async throws(KeyValueError) -> [Bool] {
        let now = clock.epochSeconds()
        let set: Item = ["status": .s(Status.sending.rawValue), "sendingAt": .number(now), "updatedAt": .s(ISO8601.format(epochSeconds: now))]
        let writes: [TableWrite] = claims.map { claim in
            .update(key: ["messageId": .s(claim.messageId)], set: set, remove: [], condition: .equals("owner", .s(claim.owner)))
        }
        var marked: [Bool] = []
        for outcome in try await store.write(table, writes) {
            switch outcome {
            case .success: marked.append(true)
            case .failure(let error) where error.code == .conditionFailed: marked.append(false)
            case .failure(let error): throw error
            }
        }
        return marked
    }

    /// Records the outcome, if `owner` still holds the claim. Returns false when another
    /// claimer took the message over meanwhile.
    @discardableResult
    public func finish(_ messageId: String, owner: String, status: Status, detail: String? = nil) async throws(KeyValueError) -> Bool {
        let outcome = try await finish([(messageId, owner)], status: status, detail: detail)
        guard let claim = outcome.claims.first else { return false }
        return try claim.get()
    }

    /// A message we sent (ids only), as `recordSent` records it.
    public struct SentRecord: Sendable, Equatable {
        public let sentId: String
        /// The inbound message it answered (nil for a business's own `send`).
        public let inReplyTo: String?
        public let businessId: String

        public init(sentId: String, inReplyTo: String?, businessId: String) {
            self.sentId = sentId
            self.inReplyTo = inReplyTo
            self.businessId = businessId
        }
    }

    public struct FinishOutcome: Sendable {
        /// Per claim, in order: whether its owner still held it (false: taken over, not
        /// written), or why it could not be written.
        public var claims: [Result<Bool, KeyValueError>]
        /// What became of the sent message's record, when one was given.
        public var sent: Result<Void, KeyValueError>?
    }

    /// Records the message sent last, as `recordSent` does, and the outcome of each claimed
    /// message, as `finish` does one: one write to the table, which the file store makes
    /// durable with one sync (a turn's final step, right after its last send).
    public func finish(
        _ claims: [(messageId: String, owner: String)], status: Status, detail: String? = nil, sent: SentRecord? = nil
    ) async throws(KeyValueError) -> FinishOutcome {
        let now = clock.epochSeconds()
        var set: Item = ["status": .s(status.rawValue), "updatedAt": .s(ISO8601.format(epochSeconds: now))]
        if let detail { set["detail"] = .s(detail) }
        // The reply's id on each message it answered, for "what happened to this message".
        if let sent { set["replyId"] = .s(sent.sentId) }
        // The sent message's record first: where the writes are separate requests (DynamoDB),
        // it lands as soon as it did on its own, before a quick echo of the reply looks for it.
        var writes: [TableWrite] = sent.map { [.put(sentItem($0, now: now))] } ?? []
        for claim in claims {
            writes.append(.update(key: ["messageId": .s(claim.messageId)], set: set, remove: ["leaseUntil"], condition: .equals("owner", .s(claim.owner))))
        }
        let outcomes = try await store.write(table, writes)
        let sentOutcome = sent == nil ? nil : outcomes.first.map { $0.map { _ in () } }
        var finished: [Result<Bool, KeyValueError>] = []
        for outcome in outcomes.dropFirst(sent == nil ? 0 : 1) {
            switch outcome {
            case .success: finished.append(.success(true))
            case .failure(let error) where error.code == .conditionFailed: finished.append(.success(false))
            case .failure(let error): finished.append(.failure(error))
            }
        }
        return FinishOutcome(claims: finished, sent: sentOutcome)
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

    /// Counts one more receive of a queued message that was sent back without being tried
    /// (its business's share, Meta's throttle), so that `process` tells such receives from
    /// real tries: a deferral never brings a message nearer the dead-letter queue. Kept beside
    /// the message's record (`deferrals:<messageId>`, whose claims replace it whole), for as
    /// long.
    public func countDeferral(_ messageId: String) async throws(KeyValueError) {
        try await store.increment(
            table, key: ["messageId": .s("deferrals:\(messageId)")], attribute: "deferrals", by: 1,
            set: ["expiresAt": .number(clock.epochSeconds() + retentionSeconds)])
    }

    /// How many of a message's receives were deferrals.
    public func deferrals(of messageId: String) async throws(KeyValueError) -> Int64 {
        try await store.get(table, key: ["messageId": .s("deferrals:\(messageId)")])?["deferrals"]?.int ?? 0
    }

    public func status(of messageId: String) async throws(KeyValueError) -> Status? {
        try await store.get(table, key: ["messageId": .s(messageId)])?["status"]?.string.flatMap(Status.init(rawValue:))
    }

    // MARK: Things used once

    /// Records `key` as spent until `expiresAt` (epoch seconds), for `businessId`; false when
    /// it was spent before. The connect flows spend their signed states through it.
    public func spendOnce(_ key: String, businessId: String, expiresAt: Int64) async throws(KeyValueError) -> Bool {
        do {
            try await store.put(
                table,
                item: ["messageId": .s(key), "status": .s("used"), "businessId": .s(businessId), "expiresAt": .number(expiresAt)],
                condition: .itemAbsent)
            return true
        } catch  where error.code == .conditionFailed {
            return false
        }
    }

    // MARK: What became of what we sent

    static func sentKey(_ sentId: String) -> Item { ["messageId": .s("sent:\(sentId)")] }

    /// Records a message we sent (ids only): the id the Send API gave it and the inbound
    /// message it answered (nil for a business's own `send`), so a later delivery status can
    /// be put on the right record.
    public func recordSent(_ sentId: String, answering inboundId: String?, businessId: String) async throws(KeyValueError) {
        try await store.put(table, item: sentItem(SentRecord(sentId: sentId, inReplyTo: inboundId, businessId: businessId), now: clock.epochSeconds()))
    }

    /// `recordSent` for a turn's last message whose outcome was recorded before its id was
    /// (a WhatsApp reply's id, written after the answer), with the id put on the message it
    /// answered too, for the lookup. One write to the table.
    public func recordReply(_ sentId: String, answering inboundId: String, businessId: String) async throws(KeyValueError) {
        let now = clock.epochSeconds()
        let outcomes = try await store.write(
            table,
            [
                .put(sentItem(SentRecord(sentId: sentId, inReplyTo: inboundId, businessId: businessId), now: now)),
                .update(key: ["messageId": .s(inboundId)], set: ["replyId": .s(sentId)], condition: .itemPresent),
            ])
        if case .failure(let error)? = outcomes.first { throw error }
    }

    private func sentItem(_ sent: SentRecord, now: Int64) -> Item {
        var item = Self.sentKey(sent.sentId)
        item["status"] = .s("sent")
        item["businessId"] = .s(sent.businessId)
        item["expiresAt"] = .number(now + retentionSeconds)
        item["updatedAt"] = .s(ISO8601.format(epochSeconds: now))
        if let inReplyTo = sent.inReplyTo { item["inReplyTo"] = .s(inReplyTo) }
        return item
    }

    /// Whether we recorded sending the message with this id (the Send API's `message_id`).
    public func wasSent(_ sentId: String) async throws(KeyValueError) -> Bool {
        try await store.get(table, key: Self.sentKey(sentId)) != nil
    }

    public enum DeliveryOutcome: Sendable, Equatable {
        /// Recorded on the sent message's record (and on the inbound message it answered).
        case recorded(inReplyTo: String?)
        /// Not a message we recorded sending (or its record has expired).
        case unknown
        /// Older news than what is recorded (statuses can arrive out of order): kept as it was.
        case stale
    }

    /// `sent` < `delivered` < `read`; `failed` is final.
    static func rank(_ status: String) -> Int {
        switch status {
        case "sent": 1
        case "delivered": 2
        case "read": 3
        case "failed": 4
        default: 0
        }
    }

    /// Records a delivery status on the sent message's record, and on the record of the
    /// inbound message it answered (`deliveryStatus`, and for `failed` Meta's error code and
    /// title), never going back from `read` to `delivered` nor from `failed`.
    public func recordDelivery(_ status: DeliveryStatus) async throws(KeyValueError) -> DeliveryOutcome {
        guard let sent = try await store.get(table, key: Self.sentKey(status.messageId)) else { return .unknown }
        let current = sent["status"]?.string ?? "sent"
        guard Self.rank(status.status) > Self.rank(current) else { return .stale }
        var set: Item = ["status": .s(status.status), "updatedAt": .s(ISO8601.format(epochSeconds: clock.epochSeconds()))]
        if let code = status.errorCode { set["errorCode"] = .number(code) }
        if let title = status.errorTitle { set["errorTitle"] = .s(title) }
        do {
            _ = try await store.update(table, key: Self.sentKey(status.messageId), set: set, condition: .itemPresent)
        } catch  where error.code == .conditionFailed {
            return .unknown
        }
        let inReplyTo = sent["inReplyTo"]?.string
        if let inReplyTo {
            var delivery: Item = ["deliveryStatus": .s(status.status)]
            if let code = status.errorCode { delivery["deliveryErrorCode"] = .number(code) }
            if let title = status.errorTitle { delivery["deliveryErrorTitle"] = .s(title) }
            do {
                _ = try await store.update(table, key: ["messageId": .s(inReplyTo)], set: delivery, condition: .itemPresent)
            } catch  where error.code == .conditionFailed {
                // The inbound record has expired: the sent record keeps the status.
            }
        }
        return .recorded(inReplyTo: inReplyTo)
    }

    // MARK: What happened to a message

    /// A message's record as the lookup shows it: ids and reasons, never text or tokens.
    public struct Trace: Sendable, Equatable {
        public var status: Status?
        public var businessId: String?
        public var updatedAt: String?
        public var leaseUntil: Int64?
        public var detail: String?
        public var replyId: String?
        public var deliveryStatus: String?
        public var deliveryErrorCode: Int64?
        public var deliveryErrorTitle: String?
        public var inDoubt: String?
        public var deferrals: Int64 = 0
        /// The id is one of ours: a message we sent (and what it answered).
        public var sentByUs = false
        public var inReplyTo: String?
    }

    /// What the ledger holds of `messageId` (nil: nothing, or expired).
    public func trace(_ messageId: String) async throws(KeyValueError) -> Trace? {
        if let item = try await store.get(table, key: ["messageId": .s(messageId)]) {
            var trace = Trace(
                status: item["status"]?.string.flatMap(Status.init(rawValue:)), businessId: item["businessId"]?.string,
                updatedAt: item["updatedAt"]?.string, leaseUntil: item["leaseUntil"]?.int, detail: item["detail"]?.string.map { String($0.prefix(500)) },
                replyId: item["replyId"]?.string, deliveryStatus: item["deliveryStatus"]?.string, deliveryErrorCode: item["deliveryErrorCode"]?.int,
                deliveryErrorTitle: item["deliveryErrorTitle"]?.string, inDoubt: item["inDoubt"]?.string)
            trace.deferrals = try await deferrals(of: messageId)
            return trace
        }
        if let sent = try await store.get(table, key: Self.sentKey(messageId)) {
            var trace = Trace(businessId: sent["businessId"]?.string, updatedAt: sent["updatedAt"]?.string)
            trace.sentByUs = true
            trace.inReplyTo = sent["inReplyTo"]?.string
            trace.deliveryStatus = sent["status"]?.string
            trace.deliveryErrorCode = sent["errorCode"]?.int
            trace.deliveryErrorTitle = sent["errorTitle"]?.string
            return trace
        }
        return nil
    }
}

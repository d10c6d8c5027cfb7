import Essentials
import FunctionRuntime
import KeyValueStore
import Logging
import MetaTelemetry
import MetaTenancy
import MetaWebhooks
import SafeJSON

/// `process`: answers the messages `receive` queued on the SQS FIFO queue (SPEC section 3 and
/// section 4, receive step 8). Takes an SQS event (`Records[]`), claims each message in the
/// exactly-once ledger (a `queued` record, or an `answering` claim whose lease ran out after a
/// crash), runs the agent, sends the reply, and reports the records to retry as
/// `{"batchItemFailures": [{"itemIdentifier": messageId}]}` (Lambda's partial batch response).
/// After a failure in a conversation, the later records of that conversation in the batch
/// are reported too, unprocessed, so its order holds.
public struct ProcessHandler: Sendable {
    public let directory: TenantDirectory
    public let ledger: MessageLedger
    public let responder: MessageResponder
    /// The conversation log and the metrics, sent after the batch's answer.
    public var telemetry: Telemetry = .none
    /// The queue a record came from, by its `eventSourceARN`: for delaying the records of a
    /// throttled account (nil: they come back after the queue's visibility timeout).
    public var queues: (@Sendable (String) -> SQSQueue?)?
    /// Each business's share of the answering (nil: none).
    public var share: TenantShare?
    /// How many conversations' turns run at once (`TURN_CONCURRENCY`); one conversation's
    /// turns never do.
    public var maxConcurrentTurns: Int = 10
    /// Where a record goes after `maxTries` real tries (`PROCESS_DEAD_LETTER_QUEUE_URL`): its
    /// receives sent back for the share or a throttle are not counted (the ledger counts
    /// them), so only real failures bring it there. Nil: the queue's own `maxReceiveCount`.
    public var deadLetters: SQSQueue?
    public var maxTries: Int = 5

    public init(
        directory: TenantDirectory, ledger: MessageLedger, responder: MessageResponder, telemetry: Telemetry = .none,
        queues: (@Sendable (String) -> SQSQueue?)? = nil, share: TenantShare? = nil
    ) {
        self.directory = directory
        self.ledger = ledger
        self.responder = responder
        self.telemetry = telemetry
        self.queues = queues
        self.share = share
    }

    public struct Report: Sendable, Equatable {
        public var failures: [String] = []
        public var answered = 0
        public var skipped = 0
        public var paused = 0
        /// Records over their business's share, sent back to wait their turn.
        public var deferred = 0
        /// Records of throttled accounts, to come back no sooner than Meta said, and records
        /// over their business's share, to come back at their turn.
        public var delayed: [Delay] = []
    }

    /// A record to keep invisible for `seconds`.
    public struct Delay: Sendable, Equatable {
        public let recordId: String
        public let receiptHandle: String
        public let queueARN: String
        public let seconds: Int
    }

    /// One SQS record read as an accepted message.
    struct Entry: Sendable {
        let recordId: String
        let group: String
        let accepted: AcceptedMessage
        var receiptHandle: String? = nil
        var queueARN: String? = nil
        /// SQS's ApproximateReceiveCount: 1 on the first delivery.
        var receiveCount = 1
        /// The record's body as SQS gave it (what goes to the dead-letter queue).
        var body = ""
    }

    /// A record as read: an accepted message, or one that never will be.
    private enum Read {
        case entry(Entry)
        case unreadable(recordId: String, group: String, body: String, receiveCount: Int)
    }

    /// Per business, what its share lets start now: admissions are asked once per business
    /// per batch, and each turn takes from its business's.
    struct Allowances {
        var remaining: [String: Int] = [:]
        var waits: [String: ArraySlice<Int>] = [:]
    }

    /// What the share says of a turn, decided before any turn runs.
    enum Admission: Sendable {
        case go
        /// Back to the queue until its slot, this many seconds from now.
        case wait(seconds: Int)
    }

    /// One message group's records of the batch, in order: its turns and the records that
    /// can never be read.
    struct Lane {
        enum Item {
            case turn([Entry], Admission)
            case unreadable(recordId: String)
        }
        var items: [Item] = []
    }

    /// The records of one conversation (one message group) run in order, one turn after the
    /// other: consecutive records of one tenant's customer are one turn (one agent call, one
    /// reply), and after a failure the group's later records go back unprocessed, so its
    /// order holds. Different conversations run at the same time, up to
    /// `maxConcurrentTurns`. Each message is still claimed on its own, so each is recorded
    /// once and a redelivery of any is a duplicate.
    public func handle(records: [JSON], context: InvocationContext) async -> Report {
        let log = telemetry.events(for: context)
        let parsed = await deadLetterSpent(records.compactMap { self.read($0, logger: context.logger) }, context: context)
        let entries = parsed.compactMap { record -> Entry? in
            if case .entry(let entry) = record { entry } else { nil }
        }
        var allowances = await self.allowances(for: entries, logger: context.logger)

        var lanes: [Lane] = []
        var laneOfGroup: [String: Int] = [:]
        var position: [String: Int] = [:]
        func lane(_ group: String) -> Int {
            if let index = laneOfGroup[group] { return index }
            lanes.append(Lane())
            laneOfGroup[group] = lanes.count - 1
            return lanes.count - 1
        }
        for (index, record) in parsed.enumerated() {
            switch record {
            case .unreadable(let recordId, let group, _, _):
                // Never answerable: after its tries it lands in the dead-letter queue.
                position[recordId] = position[recordId] ?? index
                lanes[lane(group)].items.append(.unreadable(recordId: recordId))
            case .entry(let entry):
                position[entry.recordId] = position[entry.recordId] ?? index
                let laneIndex = lane(entry.group)
                if case .turn(var turn, let admission)? = lanes[laneIndex].items.last, let previous = turn.last,
                    previous.accepted.tenant == entry.accepted.tenant, previous.accepted.message.platform == entry.accepted.message.platform,
                    previous.accepted.message.senderId == entry.accepted.message.senderId,
                    // A comment is a turn of its own, answered by its own private reply.
                    !previous.accepted.message.content.isComment, !entry.accepted.message.content.isComment
                {
                    turn.append(entry)
                    lanes[laneIndex].items[lanes[laneIndex].items.count - 1] = .turn(turn, admission)
                } else {
                    lanes[laneIndex].items.append(.turn([entry], .go))
                }
            }
        }
        // The share decides every turn in the batch's order, before any runs.
        var starts: [(position: Int, lane: Int, item: Int)] = []
        for (laneIndex, lane) in lanes.enumerated() {
            for (itemIndex, item) in lane.items.enumerated() {
                if case .turn(let turn, _) = item, let first = turn.first { starts.append((position[first.recordId] ?? 0, laneIndex, itemIndex)) }
            }
        }
        for start in starts.sorted(by: { $0.position < $1.position }) {
            guard case .turn(let turn, _) = lanes[start.lane].items[start.item] else { continue }
            lanes[start.lane].items[start.item] = .turn(turn, admit(turn, allowances: &allowances))
        }

        // Conversations at the same time, each in its own order; each business's connection
        // read once for the batch, however many of its conversations run.
        var report = Report()
        let connections = OncePerKey<Tenant, TenantCredentials?>()
        for laneReport in await mapConcurrently(
            lanes, limit: maxConcurrentTurns, { await self.run($0, connections: connections, events: log, context: context) })
        {
            report.failures += laneReport.failures
            report.answered += laneReport.answered
            report.skipped += laneReport.skipped
            report.paused += laneReport.paused
            report.deferred += laneReport.deferred
            report.delayed += laneReport.delayed
        }
        // Reported in the batch's order, whatever order the conversations finished in.
        report.failures.sort { (position[$0] ?? 0) < (position[$1] ?? 0) }
        report.delayed.sort { (position[$0.recordId] ?? 0) < (position[$1.recordId] ?? 0) }
        return report
    }

    /// Moves the records that have had their real tries (receives less deferrals) to the
    /// dead-letter queue, and returns the others. A record that cannot be moved now stays (it
    /// comes back, and the queue's own `maxReceiveCount` is the last resort).
    private func deadLetterSpent(_ records: [Read], context: InvocationContext) async -> [Read] {
        guard let deadLetters else { return records }
        var kept: [Read] = []
        for record in records {
            let (recordId, group, body, receives, messageId): (String, String, String, Int, String?)
            switch record {
            case .entry(let entry):
                (recordId, group, body, receives, messageId) = (
                    entry.recordId, entry.group, entry.body, entry.receiveCount, entry.accepted.message.messageId
                )
            case .unreadable(let id, let groupId, let text, let count):
                (recordId, group, body, receives, messageId) = (id, groupId, text, count, nil)
            }
            guard receives > maxTries else {
                kept.append(record)
                continue
            }
            var deferrals: Int64 = 0
            if let messageId {
                do {
                    deferrals = try await ledger.deferrals(of: messageId)
                } catch {
                    kept.append(record)
                    continue
                }
            }
            let tries = Int64(receives) - deferrals
            guard tries > Int64(maxTries) else {
                kept.append(record)
                continue
            }
            do {
                try await deadLetters.send(body: body, groupId: group, deduplicationId: recordId)
                context.logger.error(
                    "a record had its tries: moved to the dead-letter queue",
                    metadata: ["recordId": "\(recordId)", "tries": "\(tries)", "deferrals": "\(deferrals)"])
            } catch {
                context.logger.error("a spent record could not be moved to the dead-letter queue", metadata: ["error": "\(error)"])
                kept.append(record)
            }
        }
        return kept
    }

    /// One conversation's turns, in order; after a failure its later records go back.
    private func run(_ lane: Lane, connections: OncePerKey<Tenant, TenantCredentials?>, events: ConversationEvents?, context: InvocationContext) async -> Report
    {
        var report = Report()
        var failed = false
        for item in lane.items {
            switch item {
            case .unreadable(let recordId):
                report.failures.append(recordId)
                failed = true
            case .turn(let entries, let admission):
                if failed {
                    report.failures += entries.map(\.recordId)
                    continue
                }
                failed = await answer(entries, admission: admission, connections: connections, report: &report, events: events, context: context)
            }
        }
        return report
    }

    /// A turn starts when any of its business's share is left (one customer's several
    /// messages are one reply); else it waits for the business's next slot.
    private func admit(_ entries: [Entry], allowances: inout Allowances) -> Admission {
        guard let tenant = entries.first?.accepted.tenant else { return .go }
        let deferrable = entries.filter { $0.receiveCount == 1 }.count
        guard deferrable > 0, let remaining = allowances.remaining[tenant.businessId] else { return .go }
        if remaining > 0 {
            allowances.remaining[tenant.businessId] = remaining - deferrable
            return .go
        }
        let waits = allowances.waits[tenant.businessId] ?? []
        allowances.waits[tenant.businessId] = waits.dropFirst(deferrable)
        return .wait(seconds: waits.first ?? 1)
    }

    private func read(_ record: JSON, logger: Logger) -> Read? {
        guard let recordId = record["messageId"]?.string else {
            logger.error("an SQS record without messageId was skipped")
            return nil
        }
        let attributes = record["attributes"]
        let group = attributes?["MessageGroupId"]?.string ?? recordId
        let receiveCount = attributes?["ApproximateReceiveCount"]?.string.flatMap { Int($0) }.map { max(1, $0) } ?? 1
        let body = record["body"]?.string ?? ""
        guard let accepted = try? SafeJSON.decode(AcceptedMessage.self, from: Array(body.utf8)) else {
            logger.error("an SQS record is not an accepted message", metadata: ["recordId": "\(recordId)"])
            return .unreadable(recordId: recordId, group: group, body: body, receiveCount: receiveCount)
        }
        return .entry(
            Entry(
                recordId: recordId, group: group, accepted: accepted, receiptHandle: record["receiptHandle"]?.string,
                queueARN: record["eventSourceARN"]?.string, receiveCount: receiveCount, body: body))
    }

    /// Asks the share once per business for slots for the batch's new messages (a message that
    /// comes back has its slot already, or came back for another reason: either way it goes ahead).
    func allowances(for entries: [Entry], logger: Logger) async -> Allowances {
        var allowances = Allowances()
        guard let share else { return allowances }
        var counts: [String: Int] = [:]
        for entry in entries where entry.receiveCount == 1 {
            counts[entry.accepted.tenant.businessId, default: 0] += 1
        }
        for (businessId, count) in counts.sorted(by: { $0.key < $1.key }) {
            let admission = await share.admit(count, businessId: businessId, logger: logger)
            allowances.remaining[businessId] = admission.admitted
            allowances.waits[businessId] = admission.waits[...]
        }
        return allowances
    }

    /// Claims each message of a turn, then answers the claimed ones together. True when the
    /// turn went back (its conversation's later records must go back too).
    func answer(
        _ entries: [Entry], admission: Admission, connections: OncePerKey<Tenant, TenantCredentials?> = OncePerKey(), report: inout Report,
        events: ConversationEvents? = nil, context: InvocationContext
    ) async -> Bool {
        guard let first = entries.first else { return false }
        var logger = context.logger
        logger[metadataKey: "messageId"] = "\(first.accepted.message.messageId)"
        let tenant = first.accepted.tenant
        var failed = false
        // Past the business's share: the turn goes back until its slot.
        if case .wait(let seconds) = admission {
            logger.info("over its business's share: back in \(seconds) s", metadata: ["records": "\(entries.count)"])
            await countDeferrals(entries.map(\.accepted.message.messageId), logger: logger)
            report.failures += entries.map(\.recordId)
            report.deferred += entries.count
            for entry in entries {
                guard let handle = entry.receiptHandle, let arn = entry.queueARN else { continue }
                report.delayed.append(Delay(recordId: entry.recordId, receiptHandle: handle, queueARN: arn, seconds: seconds))
            }
            return true
        }
        var claimed: [(Entry, MessageResponder.Claimed)] = []
        var retryFrom: Int? = nil
        for (index, entry) in entries.enumerated() {
            let message = entry.accepted.message
            if claimed.contains(where: { $0.1.message.messageId == message.messageId }) {
                // The same message twice in the batch: answered with the first.
                report.skipped += 1
                continue
            }
            // A message put back from the dead-letter queue days later: past the 7 days Meta
            // allows any reply (and past the ledger's memory of it), it is never answered.
            if let acceptedAt = entry.accepted.acceptedAt {
                let (age, overflow) = ledger.clock.epochSeconds().subtractingReportingOverflow(acceptedAt)
                if overflow || age > Self.maxAnswerAgeSeconds {
                    logger.warning("accepted more than 7 days ago: not answered", metadata: ["acceptedAt": "\(acceptedAt)"])
                    report.skipped += 1
                    events?.add(
                        ConversationEvent(
                            .skipped, businessId: tenant.businessId, locationId: tenant.locationId, platform: message.platform,
                            conversationId: ConversationEvent.conversationId(tenant, message.platform, message.senderId),
                            messageIds: [message.messageId], reason: "older than 7 days"))
                    continue
                }
            }
            let owner = "\(context.requestID):\(entry.recordId)"
            do {
                switch try await ledger.claim(message.messageId, businessId: tenant.businessId, owner: owner, as: .answering, claimable: [.queued]) {
                case .claimed:
                    claimed.append((entry, MessageResponder.Claimed(message: message, owner: owner, acceptedAt: entry.accepted.acceptedAt)))
                case .claimedInDoubt:
                    logger.warning("a reply may have gone out already: answered again (REPLY_IN_DOUBT=resend)")
                    events?.add(inDoubt(message, tenant: tenant, reason: "sent again"))
                    claimed.append((entry, MessageResponder.Claimed(message: message, owner: owner, acceptedAt: entry.accepted.acceptedAt)))
                case .settledInDoubt:
                    logger.warning("a reply may have gone out already: not sent again (REPLY_IN_DOUBT=skip)")
                    events?.add(inDoubt(message, tenant: tenant, reason: "not sent again"))
                    report.skipped += 1
                case .held:
                    logger.info("another invocation is answering this message: retried later")
                    retryFrom = index
                case .taken(let status):
                    logger.info("already handled: skipped", metadata: ["status": "\(status?.rawValue ?? "unknown")"])
                    report.skipped += 1
                    events?.add(
                        ConversationEvent(
                            .duplicate, businessId: tenant.businessId, locationId: tenant.locationId, platform: message.platform,
                            conversationId: ConversationEvent.conversationId(tenant, message.platform, message.senderId),
                            messageIds: [message.messageId]))
                }
            } catch {
                logger.error("store failure: retried later", metadata: ["error": "\(error)"])
                retryFrom = index
            }
            if retryFrom != nil { break }
        }
        // This record and the rest of its conversation go back, in order (after the claimed
        // ones, if those go back too).
        let notClaimed = retryFrom.map { entries[$0...].map(\.recordId) } ?? []
        if !notClaimed.isEmpty { failed = true }
        defer { report.failures += notClaimed }
        guard !claimed.isEmpty else { return failed }
        let turn = claimed.map(\.1)
        let credentials: TenantCredentials?
        do {
            let directory = self.directory
            credentials = try await connections.value(for: tenant) { try await directory.credentials(tenant: tenant) }
        } catch {
            logger.error("store failure: retried later", metadata: ["error": "\(error)"])
            await release(turn, logger: logger)
            report.failures += claimed.map(\.0.recordId)
            return true
        }
        guard let credentials, credentials.isActive else {
            logger.warning("tenant has no active credentials: not answered")
            for claim in turn {
                do {
                    try await ledger.finish(claim.message.messageId, owner: claim.owner, status: .failed, detail: "no active credentials")
                } catch {
                    logger.error("could not record the outcome", metadata: ["error": "\(error)"])
                }
            }
            report.skipped += turn.count
            return failed
        }
        let outcome = await responder.answer(
            turn, tenant: tenant, credentials: credentials, deadline: context.deadline - .milliseconds(300),
            retryTransient: true, later: context.afterResponse, events: events, logger: logger)
        switch outcome {
        case .answered, .noReply: report.answered += turn.count
        case .paused: report.paused += turn.count
        case .failed, .unconfirmed: report.skipped += turn.count
        case .unrecorded:
            // Sent, not recorded: the records come back to a later delivery, which settles
            // them by the in-doubt rule once their lease runs out.
            report.answered += turn.count
            report.failures += claimed.map(\.0.recordId)
            failed = true
        case .retryLater:
            report.failures += claimed.map(\.0.recordId)
            failed = true
        case .throttled(_, let seconds):
            // Back to the queue, and kept there until Meta lets the account go: SQS's own
            // redelivery would come at the visibility timeout and spend another receive.
            report.failures += claimed.map(\.0.recordId)
            failed = true
            await countDeferrals(claimed.map(\.0.accepted.message.messageId), logger: logger)
            for (entry, _) in claimed {
                guard let handle = entry.receiptHandle, let arn = entry.queueARN else { continue }
                report.delayed.append(Delay(recordId: entry.recordId, receiptHandle: handle, queueARN: arn, seconds: seconds))
            }
        }
        return failed
    }

    /// A deferral is not a try: counted, so the record's tries stay its real ones.
    private func countDeferrals(_ messageIds: [String], logger: Logger) async {
        guard deadLetters != nil else { return }
        for messageId in messageIds {
            do {
                try await ledger.countDeferral(messageId)
            } catch {
                logger.warning("a deferral could not be counted (it counts as a try)", metadata: ["error": "\(error)"])
            }
        }
    }

    private func inDoubt(_ message: InboundMessage, tenant: Tenant, reason: String) -> ConversationEvent {
        ConversationEvent(
            .replyInDoubt, businessId: tenant.businessId, locationId: tenant.locationId, platform: message.platform,
            conversationId: ConversationEvent.conversationId(tenant, message.platform, message.senderId), messageIds: [message.messageId],
            reason: reason)
    }

    /// Makes the delayed records invisible for their time (a failure only means they come
    /// back at the queue's visibility timeout, and are throttled again then).
    func delay(_ delays: [Delay], logger: Logger) async {
        guard let queues, !delays.isEmpty else { return }
        for (arn, records) in Dictionary(grouping: delays, by: \.queueARN) {
            guard let queue = queues(arn) else {
                logger.warning("a record's queue is not one this function can reach: not delayed")
                continue
            }
            for (seconds, sameDelay) in Dictionary(grouping: records, by: \.seconds) {
                do {
                    try await queue.changeVisibility(of: sameDelay.map(\.receiptHandle), seconds: seconds)
                    logger.info("records delayed", metadata: ["records": "\(sameDelay.count)", "seconds": "\(seconds)"])
                } catch {
                    logger.warning("could not delay records: they come back at the visibility timeout", metadata: ["error": "\(error)"])
                }
            }
        }
    }

    private func release(_ turn: [MessageResponder.Claimed], logger: Logger) async {
        for claim in turn {
            do {
                try await ledger.release(claim.message.messageId, owner: claim.owner)
            } catch {
                logger.error("could not release a claim", metadata: ["error": "\(error)"])
            }
        }
    }

    /// What a sweep of ended pauses did.
    public struct OfferReport: Sendable, Equatable {
        public var offered = 0
        public var answered = 0

        public init(offered: Int = 0, answered: Int = 0) {
            self.offered = offered
            self.answered = answered
        }
    }

    /// Offers each pause that ended with the customer's messages unanswered to the agent,
    /// once, as one turn (`answerAfterPause`); run by the minute's schedule. What cannot be
    /// offered now (the agent or Graph failed for a while) stays due for the next run.
    public func offerWaitingAfterPauses(context: InvocationContext) async -> OfferReport {
        var report = OfferReport()
        guard let conversations = responder.conversations else { return report }
        let due: [Conversations.DueOffer]
        do {
            due = try await conversations.dueOffers()
        } catch {
            context.logger.warning("the ended pauses could not be read", metadata: ["error": "\(error)"])
            return report
        }
        let events = telemetry.events(for: context)
        for offer in due {
            // Leave time to record the last one's outcome.
            guard responder.clock.remaining(until: context.deadline) > .seconds(5) else { break }
            guard let outcome = await responder.offer(offer, owner: context.requestID, deadline: context.deadline, events: events, logger: context.logger)
            else { continue }
            report.offered += 1
            if case .answered = outcome { report.answered += 1 }
        }
        if report.offered > 0 {
            context.logger.info("ended pauses offered to the agent", metadata: ["offered": "\(report.offered)", "answered": "\(report.answered)"])
        }
        return report
    }

    /// The oldest message `process` answers (a redriven one included): Meta's longest window
    /// (a person's reply, `HUMAN_AGENT`), also how long the ledger remembers a message.
    public static let maxAnswerAgeSeconds: Int64 = Conversations.humanAgentWindowSeconds

    public var function: some FunctionHandler { Function(handler: self) }

    struct Function: FunctionHandler {
        let handler: ProcessHandler

        func handle(event: [UInt8], context: InvocationContext) async throws -> [UInt8] {
            // The minute's schedule: pauses that ended with messages waiting are offered.
            if let document = try? JSON.parse(event), let source = document["source"]?.string, source == "aws.scheduler" || source == "aws.events" {
                let offered = await handler.offerWaitingAfterPauses(context: context)
                return JSON.dictionary(["offered": .integer(offered.offered), "answered": .integer(offered.answered)]).encoded()
            }
            guard let document = try? JSON.parse(event), let records = document["Records"]?.array else {
                throw ProcessEventError(errorMessage: "the event is not an SQS event (no Records array)")
            }
            let report = await handler.handle(records: records, context: context)
            await handler.delay(report.delayed, logger: context.logger)
            context.logger.info(
                "batch processed",
                metadata: [
                    "records": "\(records.count)", "answered": "\(report.answered)", "skipped": "\(report.skipped)", "paused": "\(report.paused)",
                    "deferred": "\(report.deferred)", "failures": "\(report.failures.count)",
                ])
            return JSON.dictionary(["batchItemFailures": .array(report.failures.map { ["itemIdentifier": .string($0)] })]).encoded()
        }
    }
}

public struct ProcessEventError: FunctionError {
    public let errorMessage: String
    public var errorType: String { "InvalidEvent" }
}

import Essentials
import FunctionRuntime
import KeyValueStore
import Logging
import MetaTelemetry
import MetaTenancy
import MetaWebhooks

/// A message accepted by `receive`, handed to the answer step (inline) or to the queue.
public struct AcceptedMessage: Sendable, Codable, Equatable {
    public let tenant: Tenant
    public let message: InboundMessage
    /// When `receive` accepted it (epoch seconds, our clock): the time the customer's service
    /// window is recorded from when `process` answers it (absent in records queued before
    /// this field existed: `process`'s own time then).
    public var acceptedAt: Int64?

    public init(tenant: Tenant, message: InboundMessage, acceptedAt: Int64? = nil) {
        self.tenant = tenant
        self.message = message
        self.acceptedAt = acceptedAt
    }
}

/// Where accepted messages go to be answered (RECEIVE_DISPATCH=sqs).
public protocol MessageQueue: Sendable {
    func enqueue(_ messages: [AcceptedMessage]) async throws(QueueError)
}

public struct QueueError: Error, Sendable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// `POST /webhooks/meta`: signature, parsing, tenant routing, the exactly-once claim, then
/// the answer step inline or the queue (SPEC section 4, receive).
public struct ReceiveHandler: Sendable {
    public enum Dispatch: Sendable {
        case inline
        case queue(any MessageQueue)
    }

    public let signature: WebhookSignature
    public let directory: TenantDirectory
    public let ledger: MessageLedger
    public var responder: MessageResponder
    public let dispatch: Dispatch
    /// API Gateway allows 10 MB; Meta's batches are far smaller. Larger bodies are refused unread.
    public let maxBodyBytes: Int
    /// Meta wants its 200 within 5 seconds: inline work stops claiming new messages after this.
    public let inlineBudget: Duration
    /// When a webhook last arrived per account, for the connection status (written after the
    /// answer, at most once a minute per account).
    public let sightings: WebhookSightings
    public let clock: WallClock
    /// Where each customer's last message is recorded, for `send`'s customer service window,
    /// and where a person's answer pauses the agent.
    public let conversations: Conversations?
    /// Our Meta app's id (`META_APP_ID`): a Messenger echo carrying it is ours.
    public let appId: String?
    /// An echo we do not know may be our own reply whose id is being recorded right now: it is
    /// looked up once more after this long before it counts as a person's.
    public let echoRecheckDelay: Duration
    /// The conversation log and the metrics, sent after the answer.
    public var telemetry: Telemetry = .none
    /// How many conversations of one delivery are answered at once (`TURN_CONCURRENCY`).
    public var maxConcurrentTurns: Int = 10

    public init(
        signature: WebhookSignature, directory: TenantDirectory, ledger: MessageLedger, responder: MessageResponder,
        dispatch: Dispatch = .inline, maxBodyBytes: Int = 4 * 1024 * 1024, inlineBudget: Duration = .milliseconds(4500),
        sightings: WebhookSightings = WebhookSightings(), clock: WallClock = .system, conversations: Conversations? = nil,
        appId: String? = nil, echoRecheckDelay: Duration = .milliseconds(500)
    ) {
        self.signature = signature
        self.directory = directory
        self.ledger = ledger
        self.responder = responder
        self.dispatch = dispatch
        self.maxBodyBytes = maxBodyBytes
        self.inlineBudget = inlineBudget
        self.sightings = sightings
        self.clock = clock
        self.conversations = conversations
        self.appId = appId
        self.echoRecheckDelay = echoRecheckDelay
    }

    /// Counts for the response body and the log (no identifiers, no text).
    struct Summary: Encodable {
        var events = 0
        var answered = 0
        var queued = 0
        var noReply = 0
        var duplicates = 0
        var skipped = 0
        var unknownTenant = 0
        var inactiveTenant = 0
        var invalid = 0
        var failed = 0
        var deferred = 0
        /// Delivery statuses of messages we sent, recorded (WhatsApp).
        var statuses = 0
        /// Of those, messages Meta could not deliver.
        var deliveryFailures = 0
        /// Messages accepted while a person had the conversation: recorded, not answered.
        var paused = 0
        /// Echoes of messages a person wrote (not us): each pauses the agent in its conversation.
        var humanReplies = 0
        /// Messages of accounts Meta throttles: not answered now, left for Meta's redelivery.
        var throttled = 0
        /// Messages another invocation holds under a live lease (inline): not done, so Meta is
        /// asked (500) to deliver them again; a holder that died lets its lease run out.
        var inProgress = 0
        /// Messages whose reply may have gone out without its outcome recorded, settled by
        /// the in-doubt rule without sending again (`REPLY_IN_DOUBT=skip`): final.
        var unconfirmed = 0
        /// Messages answered whose outcome could not be written: asked for again (500) so a
        /// later delivery settles them.
        var unrecorded = 0
        /// Echoes not placed yet: a reply of ours to that customer was still on its way when
        /// the time ran out, so the echo may be it. Asked for again (500), judged then.
        var echoesPending = 0
        /// Handover protocol events: the conversation taken by another app (paused) or passed
        /// back to ours (resumed).
        var handovers = 0
        /// WhatsApp account health changes recorded (quality, account, template status).
        var healthUpdates = 0
    }

    /// One customer's claimed messages of this delivery, answered as one turn.
    struct Turn {
        let tenant: Tenant
        let credentials: TenantCredentials
        var messages: [MessageResponder.Claimed]

        /// A customer's messages are one turn; a comment is a turn of its own.
        static func conversation(of message: InboundMessage) -> String {
            if let comment = message.content.comment { return "comment#\(comment.id)" }
            return "\(message.platform.rawValue)#\(message.senderId)"
        }
        var conversation: String { messages.first.map { Self.conversation(of: $0.message) } ?? "" }
    }

    public func handle(_ request: HTTPRequest, context: InvocationContext) async throws(RequestRefused) -> HTTPResponse {
        let logger = context.logger
        guard request.body.count <= maxBodyBytes else {
            logger.warning("webhook refused: body too large", metadata: ["bytes": "\(request.body.count)"])
            throw RequestRefused(413, code: .payloadTooLarge, "the body is larger than \(maxBodyBytes) bytes")
        }
        if let failure = signature.check(body: request.body, header: request.headers["X-Hub-Signature-256"]) {
            logger.warning("webhook refused: \(failure.rawValue)")
            throw RequestRefused(401, code: RefusalCode(failure), "the X-Hub-Signature-256 header does not sign this body with the app secret")
        }
        let delivery: WebhookParser.Delivery
        do {
            delivery = try WebhookParser.parse(request.body)
        } catch {
            logger.warning("webhook refused: \(error.message)")
            throw RequestRefused(400, code: .invalidPayload, error.message)
        }

        let start = clock.instant()
        let budgetEnd = min(start + inlineBudget, context.deadline - .milliseconds(250))
        let log = telemetry.events(for: context)
        let objectPlatform: Platform? =
            switch delivery.object {
            case "instagram": .instagram
            case "page": .messenger
            case "whatsapp_business_account": .whatsapp
            default: nil
            }
        var summary = Summary(events: delivery.events.count)
        var retry = false
        var routes: [String: TenantRoute?] = [:]
        var credentialsCache: [String: TenantCredentials?] = [:]
        var toQueue: [(AcceptedMessage, owner: String)] = []
        var echoes: [Echo] = []
        var controls: [ThreadControl] = []
        /// Inline: the claimed messages of each conversation, in order (one turn each).
        var turns: [Turn] = []

        // Stable sort: events of one delivery in `timestamp` order.
        let events = delivery.events.enumerated().sorted { ($0.element.timestamp, $0.offset) < ($1.element.timestamp, $1.offset) }.map(\.element)
        for event in events {
            switch event {
            case .invalid(let reason):
                summary.invalid += 1
                logger.warning("unreadable event skipped: \(reason)")
            case .skipped(let reason, let accountId, let customerId, _):
                summary.skipped += 1
                logger.debug("event not answered", metadata: ["kind": "\(reason.rawValue)"])
                if let log {
                    // Whose it is, when the event says: the record is partitioned by its
                    // conversation, not every tenant's reads in one shard.
                    var event = ConversationEvent(.skipped, platform: objectPlatform, reason: reason.rawValue)
                    if !accountId.isEmpty, let tenant = (try? await route(accountId, cache: &routes))??.tenant {
                        event.businessId = tenant.businessId
                        event.locationId = tenant.locationId
                        if let customerId, let platform = objectPlatform {
                            event.conversationId = ConversationEvent.conversationId(tenant, platform, customerId)
                        }
                    }
                    log.add(event)
                }
            case .echo(let echo):
                echoes.append(echo)
            case .threadControl(let control):
                controls.append(control)
            case .whatsappHealth(let health):
                do {
                    try await directory.record(health)
                    summary.healthUpdates += 1
                    if health.isQualityDrop {
                        logger.warning("a WhatsApp number's quality dropped", metadata: ["wabaId": "\(health.wabaId)"])
                        log?.add(ConversationEvent(.whatsappQualityDrop, platform: .whatsapp, reason: "\(health.kind)"))
                    }
                } catch {
                    retry = true
                    summary.failed += 1
                    logger.error("store failure while recording a WhatsApp account's health", metadata: ["error": "\(error)"])
                }
            case .delivery(let status):
                do {
                    try await record(status, summary: &summary, routes: &routes, logger: logger)
                    if let tenant = routes[status.accountId]??.tenant {
                        log?.add(
                            ConversationEvent(
                                .deliveryStatus, businessId: tenant.businessId, locationId: tenant.locationId, platform: .whatsapp,
                                conversationId: status.recipientId.map { ConversationEvent.conversationId(tenant, .whatsapp, $0) },
                                messageIds: [status.messageId], reason: status.status))
                    }
                } catch {
                    retry = true
                    summary.failed += 1
                    logger.error("store failure while recording a delivery status", metadata: ["error": "\(error)"])
                }
            case .message(let message):
                do {
                    guard
                        let (tenant, credentials) = try await connection(
                            for: message.accountId, platform: message.platform, summary: &summary, routes: &routes, cache: &credentialsCache,
                            logger: logger)
                    else { continue }
                    if credentials.owns(message.senderId) {
                        summary.skipped += 1
                        continue
                    }
                    if let comment = message.content.comment,
                        let reason = try await notToAnswer(comment, of: message, tenant: tenant, credentials: credentials)
                    {
                        summary.skipped += 1
                        logger.info("a comment not answered", metadata: ["reason": "\(reason)", "commentId": "\(comment.id)"])
                        log?.add(
                            ConversationEvent(
                                .commentSkipped, businessId: tenant.businessId, locationId: tenant.locationId, platform: message.platform,
                                conversationId: ConversationEvent.conversationId(tenant, message.platform, message.senderId), messageIds: [comment.id],
                                reason: reason))
                        continue
                    }
                    if case .inline = dispatch, clock.instant() > budgetEnd - .seconds(1) {
                        // Not claimed: Meta redelivers, and what was answered is skipped then.
                        summary.deferred += 1
                        retry = true
                        continue
                    }
                    let owner = "\(context.requestID):\(message.messageId)"
                    let claim: MessageLedger.Claim
                    switch dispatch {
                    case .inline:
                        claim = try await ledger.claim(message.messageId, businessId: tenant.businessId, owner: owner, as: .answering)
                    case .queue:
                        // A record still `queued` is sent again: the queue's deduplication and
                        // the claim in `process` keep it answered once.
                        claim = try await ledger.claim(message.messageId, businessId: tenant.businessId, owner: owner, as: .queued, claimable: [.queued])
                    }
                    func event(_ kind: ConversationEvent.Kind, reason: String? = nil) -> ConversationEvent {
                        var event = ConversationEvent(
                            kind, businessId: tenant.businessId, locationId: tenant.locationId, platform: message.platform,
                            conversationId: ConversationEvent.conversationId(tenant, message.platform, message.senderId), messageIds: [message.messageId],
                            reason: reason)
                        if log?.includeText == true { event.text = message.content.agentText }
                        return event
                    }
                    switch claim {
                    case .claimed:
                        break
                    case .claimedInDoubt:
                        // A reply may have gone out already; the rule allows sending again.
                        log?.add(event(.replyInDoubt, reason: "sent again"))
                        logger.warning(
                            "a reply may have gone out already: answered again (REPLY_IN_DOUBT=resend)", metadata: ["messageId": "\(message.messageId)"])
                    case .settledInDoubt:
                        log?.add(event(.replyInDoubt, reason: "not sent again"))
                        summary.unconfirmed += 1
                        logger.warning(
                            "a reply may have gone out already: not sent again (REPLY_IN_DOUBT=skip)", metadata: ["messageId": "\(message.messageId)"])
                        continue
                    case .held(let status):
                        if case .inline = dispatch {
                            // Not done: another invocation has it, or had it and died. Meta's
                            // redelivery comes back to it; after the lease it is taken over.
                            summary.inProgress += 1
                            retry = true
                            logger.info(
                                "another invocation holds this message: asked for again",
                                metadata: ["messageId": "\(message.messageId)", "status": "\(status.rawValue)"])
                            continue
                        }
                        // The queue has it: `process` holds it, and SQS gives it back if that dies.
                        log?.add(event(.duplicate))
                        summary.duplicates += 1
                        continue
                    case .taken:
                        log?.add(event(.duplicate))
                        summary.duplicates += 1
                        logger.info("already handled: not answered again", metadata: ["messageId": "\(message.messageId)"])
                        continue
                    }
                    let accepted: ConversationEvent.Kind = message.content.isComment ? .commentAccepted : .accepted
                    if case .queue = dispatch { log?.add(event(accepted, reason: "queued")) } else { log?.add(event(accepted)) }
                    switch dispatch {
                    case .inline:
                        // A customer's messages of one delivery are one turn: one reply.
                        let claimed = MessageResponder.Claimed(message: message, owner: owner, acceptedAt: clock.epochSeconds())
                        if let index = turns.firstIndex(where: { $0.tenant == tenant && $0.conversation == Turn.conversation(of: message) }) {
                            turns[index].messages.append(claimed)
                        } else {
                            turns.append(Turn(tenant: tenant, credentials: credentials, messages: [claimed]))
                        }
                    case .queue:
                        toQueue.append((AcceptedMessage(tenant: tenant, message: message, acceptedAt: clock.epochSeconds()), owner))
                    }
                } catch {
                    // The store could not be read or written: Meta's retry can fix that.
                    retry = true
                    summary.failed += 1
                    logger.error("store failure while handling an event", metadata: ["error": "\(error)"])
                }
            }
        }

        // Echoes first: a person's answer in this delivery pauses the agent before it answers.
        if !echoes.isEmpty {
            do {
                try await handle(
                    echoes, budgetEnd: budgetEnd, summary: &summary, routes: &routes, cache: &credentialsCache, events: log, logger: logger)
                if summary.echoesPending > 0 { retry = true }
            } catch {
                retry = true
                summary.failed += 1
                logger.error("store failure while reading echoes", metadata: ["error": "\(error)"])
            }
        }

        // The handover protocol after the echoes: it says outright who has the conversation.
        if !controls.isEmpty {
            do {
                try await handle(controls, summary: &summary, routes: &routes, cache: &credentialsCache, events: log, logger: logger)
            } catch {
                retry = true
                summary.failed += 1
                logger.error("store failure while recording a handover", metadata: ["error": "\(error)"])
            }
        }

        // Different conversations at the same time (up to `maxConcurrentTurns`), all within
        // the inline budget; one conversation is one turn.
        let responder = self.responder
        let outcomes = await mapConcurrently(turns, limit: maxConcurrentTurns) { turn in
            await responder.answer(
                turn.messages, tenant: turn.tenant, credentials: turn.credentials, deadline: budgetEnd,
                retryTransient: false, later: context.afterResponse, events: log, logger: context.logger)
        }
        for (turn, outcome) in zip(turns, outcomes) {
            let count = turn.messages.count
            switch outcome {
            case .answered: summary.answered += count
            case .noReply: summary.noReply += count
            case .paused: summary.paused += count
            case .failed: summary.failed += count
            case .retryLater:
                // Out of time: the claims were released, and Meta's redelivery (asked for by
                // the 500) answers them; what was answered is a duplicate then.
                summary.deferred += count
                retry = true
            case .throttled:
                // Meta throttles the account: the claims were released and the redelivery
                // (asked for by the 500, on Meta's own backoff) answers them once it lets go.
                summary.throttled += count
                retry = true
            case .unconfirmed: summary.unconfirmed += count
            case .unrecorded:
                // Sent, not recorded: the redelivery settles the records (never sent twice by
                // default: REPLY_IN_DOUBT).
                summary.answered += count
                summary.unrecorded += count
                retry = true
            }
        }

        recordSightings(of: events, routes: routes, context: context)

        if case .queue(let queue) = dispatch, !toQueue.isEmpty {
            do {
                try await queue.enqueue(toQueue.map(\.0))
                summary.queued = toQueue.count
            } catch {
                retry = true
                logger.error("the queue could not be reached: Meta will redeliver", metadata: ["error": "\(error)"])
                for (accepted, owner) in toQueue {
                    do {
                        try await ledger.release(accepted.message.messageId, owner: owner)
                    } catch {
                        logger.error("could not release a claim", metadata: ["error": "\(error)"])
                    }
                }
            }
        }

        logger.info(
            "webhook handled",
            metadata: [
                "events": "\(summary.events)", "answered": "\(summary.answered)", "queued": "\(summary.queued)",
                "duplicates": "\(summary.duplicates)", "unknownTenant": "\(summary.unknownTenant)", "failed": "\(summary.failed)",
                "retry": "\(retry)",
            ])
        return .json(retry ? 500 : 200, summary)
    }
}

extension ReceiveHandler {
    /// The tenant an account routes to, read once per delivery.
    func route(_ account: String, cache: inout [String: TenantRoute?]) async throws(KeyValueError) -> TenantRoute? {
        if let cached = cache[account] { return cached }
        let route = try await directory.route(identifier: account)
        cache[account] = route
        return route
    }

    /// The tenant and active credentials an account's event belongs to, read once per
    /// delivery; nil (counted) when the account routes nowhere or its connection is inactive.
    func connection(
        for account: String, platform: Platform, summary: inout Summary, routes: inout [String: TenantRoute?],
        cache: inout [String: TenantCredentials?], logger: Logger
    ) async throws(KeyValueError) -> (Tenant, TenantCredentials)? {
        guard let tenant = try await route(account, cache: &routes)?.tenant else {
            summary.unknownTenant += 1
            logger.info("no tenant for this account: acknowledged", metadata: ["accountId": "\(account)", "platform": "\(platform.rawValue)"])
            return nil
        }
        // Per location: each location's connection has its own token.
        let key = "\(tenant.businessId)#\(tenant.locationId)"
        let credentials: TenantCredentials?
        if let cached = cache[key] {
            credentials = cached
        } else {
            credentials = try await directory.credentials(tenant: tenant)
            cache[key] = credentials
        }
        guard let credentials, credentials.isActive else {
            summary.inactiveTenant += 1
            logger.warning("tenant has no active credentials: not answered", metadata: ["businessId": "\(tenant.businessId)"])
            return nil
        }
        return (tenant, credentials)
    }

    /// The handover protocol (Messenger and Instagram with Conversation Routing): when
    /// another app (Meta's Page Inbox, where a person answers) takes the conversation, the
    /// agent is paused for the location's handoff pause, as for a person's echo; when one
    /// passes it to our app, the pause ends at once (and what waits is offered, where the
    /// location wants it). Where both come, this wins over the echoes: it says outright who
    /// has the conversation, an echo only that someone wrote.
    func handle(
        _ controls: [ThreadControl], summary: inout Summary, routes: inout [String: TenantRoute?], cache: inout [String: TenantCredentials?],
        events: ConversationEvents?, logger: Logger
    ) async throws(KeyValueError) {
        guard let conversations, let appId else {
            summary.skipped += controls.count
            return
        }
        for control in controls {
            guard
                let (tenant, credentials) = try await connection(
                    for: control.accountId, platform: control.platform, summary: &summary, routes: &routes, cache: &cache, logger: logger),
                let account = credentials.sendingAccount(for: control.platform)
            else { continue }
            let conversationId = ConversationEvent.conversationId(tenant, control.platform, control.customerId)
            summary.handovers += 1
            if control.newOwnerAppId == appId {
                try await conversations.resume(platform: control.platform, account: account, customer: control.customerId)
                events?.add(
                    ConversationEvent(
                        .conversationResumed, businessId: tenant.businessId, locationId: tenant.locationId, platform: control.platform,
                        conversationId: conversationId, reason: "handover"))
                logger.info("the conversation was passed back to this app: the agent answers again", metadata: ["businessId": "\(tenant.businessId)"])
            } else if control.previousOwnerAppId == appId || control.newOwnerAppId != nil {
                try await conversations.pause(
                    platform: control.platform, account: account, customer: control.customerId, businessId: tenant.businessId,
                    seconds: responder.pauseSeconds(for: credentials.settings), by: .human)
                events?.add(
                    ConversationEvent(
                        .conversationPaused, businessId: tenant.businessId, locationId: tenant.locationId, platform: control.platform,
                        conversationId: conversationId, reason: "handover"))
                logger.info("another app took the conversation: the agent steps back", metadata: ["businessId": "\(tenant.businessId)"])
            }
        }
    }

    /// How long after a comment Meta takes a private reply to it.
    public static let commentReplySeconds: Int64 = 7 * 24 * 3600

    /// Why a comment is not to be answered, or nil: the location did not opt in
    /// (`commentReplies` off), it is older than a private reply may answer, or it is a public
    /// reply of ours coming back (its id recorded when it was posted: no loops).
    func notToAnswer(
        _ comment: Comment, of message: InboundMessage, tenant: Tenant, credentials: TenantCredentials
    ) async throws(KeyValueError)
        -> String?
    {
        if responder.defaults.resolve(credentials.settings).commentReplies == .off { return "comment replies off" }
        let (age, overflow) = clock.epochSeconds().subtractingReportingOverflow(message.timestamp / 1000)
        if overflow || age > Self.commentReplySeconds { return SkipReason.commentTooOld.rawValue }
        if try await ledger.wasSent(comment.id) { return SkipReason.ownComment.rawValue }
        return nil
    }

    /// Echoes of what the business's accounts sent. Ours (a Messenger echo with our app id, or
    /// a message id we recorded sending) are left; a person's (written in Meta's apps or
    /// another tool) pauses the agent in that conversation for the handoff pause, each one
    /// extending it. An echo not known at first is looked up once more after
    /// `echoRecheckDelay`: Meta's echo of our own reply can overtake the write of its id.
    func handle(
        _ echoes: [Echo], budgetEnd: ContinuousClock.Instant, summary: inout Summary, routes: inout [String: TenantRoute?],
        cache: inout [String: TenantCredentials?], events: ConversationEvents? = nil, logger: Logger
    ) async throws(KeyValueError) {
        var unknown: [(Echo, Tenant, TenantCredentials)] = []
        for echo in echoes {
            guard
                let (tenant, credentials) = try await connection(
                    for: echo.accountId, platform: echo.platform, summary: &summary, routes: &routes, cache: &cache, logger: logger)
            else { continue }
            if echo.platform == .messenger, let appId, echo.appId == appId {
                summary.skipped += 1
                continue
            }
            if try await ledger.wasSent(echo.messageId) {
                summary.skipped += 1
                continue
            }
            unknown.append((echo, tenant, credentials))
        }
        guard !unknown.isEmpty else { return }
        if clock.instant() + echoRecheckDelay < budgetEnd - .seconds(1) {
            try? await clock.sleep(echoRecheckDelay)
            var stillUnknown: [(Echo, Tenant, TenantCredentials)] = []
            for entry in unknown {
                if try await ledger.wasSent(entry.0.messageId) {
                    summary.skipped += 1
                } else {
                    stillUnknown.append(entry)
                }
            }
            unknown = stillUnknown
        }
        guard let conversations else {
            summary.skipped += unknown.count
            return
        }
        for (echo, tenant, credentials) in unknown {
            guard let account = credentials.sendingAccount(for: echo.platform) else {
                summary.skipped += 1
                continue
            }
            switch try await placed(echo, account: account, conversations: conversations, budgetEnd: budgetEnd) {
            case .ours:
                summary.skipped += 1
                continue
            case .pending:
                summary.echoesPending += 1
                logger.info("an echo came while our reply was on its way: asked for again", metadata: ["businessId": "\(tenant.businessId)"])
                continue
            case .person:
                break
            }
            let until = try await conversations.pause(
                platform: echo.platform, account: account, customer: echo.customerId, businessId: tenant.businessId,
                seconds: responder.pauseSeconds(for: credentials.settings), by: .human)
            // The person's message, for the agent's next turn (its text where the location keeps it).
            let keepText = responder.defaults.resolve(credentials.settings).keepTextDuringPause
            do {
                try await conversations.keepDuringPause(
                    [Conversations.PauseNote(messageId: echo.messageId, from: .business, at: clock.epochSeconds(), text: keepText ? echo.text : nil)],
                    platform: echo.platform, account: account, customer: echo.customerId, tenant: tenant, offer: false)
            } catch {
                logger.warning("the person's message could not be kept for the agent", metadata: ["error": "\(error)"])
            }
            summary.humanReplies += 1
            events?.add(
                ConversationEvent(
                    .conversationPaused, businessId: tenant.businessId, locationId: tenant.locationId, platform: echo.platform,
                    conversationId: ConversationEvent.conversationId(tenant, echo.platform, echo.customerId), messageIds: [echo.messageId],
                    reason: "human"))
            logger.info(
                "a person answered the customer: the agent steps back",
                metadata: [
                    "businessId": "\(tenant.businessId)", "platform": "\(echo.platform.rawValue)", "pausedUntil": "\(ISO8601.format(epochSeconds: until))",
                ])
        }
    }

    enum EchoAuthor { case ours, person, pending }

    /// Whose an echo is that no recorded id names: while a turn of ours in that conversation
    /// may still be sending (its marker live, its claim `answering` or `sending`), it may be
    /// ours with its id not yet written, so it waits for that turn to settle (polling, within
    /// the budget); settled, it is ours if its id was recorded, else a person's. `pending`
    /// when the budget ran out first. The marker is read once: a turn started after the echo
    /// came cannot have sent it.
    func placed(
        _ echo: Echo, account: String, conversations: Conversations, budgetEnd: ContinuousClock.Instant
    ) async throws(KeyValueError) -> EchoAuthor {
        let state = try await conversations.state(platform: echo.platform, account: account, customer: echo.customerId)
        guard let inFlight = state.inFlight, inFlight.until >= clock.epochSeconds() else { return .person }
        while true {
            let status = try await ledger.status(of: inFlight.messageId)
            let settled = status != .answering && status != .sending
            if try await ledger.wasSent(echo.messageId) { return .ours }
            if settled { return .person }
            guard clock.instant() + .milliseconds(100) < budgetEnd - .seconds(1), (try? await clock.sleep(.milliseconds(100))) != nil else {
                return .pending
            }
        }
    }

    /// A delivery status of a message we sent: on its record and the record of the message it
    /// answered; a failure also on the sending number's identifiers item, for the connection
    /// status. A status for an account nobody connected, or a message we did not record, is
    /// acknowledged and left.
    func record(_ status: DeliveryStatus, summary: inout Summary, routes: inout [String: TenantRoute?], logger: Logger) async throws(KeyValueError) {
        guard try await route(status.accountId, cache: &routes) != nil else {
            summary.unknownTenant += 1
            return
        }
        switch try await ledger.recordDelivery(status) {
        case .recorded(let inReplyTo):
            summary.statuses += 1
            guard status.status == "failed" else { return }
            summary.deliveryFailures += 1
            logger.warning(
                "a message we sent was not delivered",
                metadata: [
                    "sentId": "\(status.messageId)", "inReplyTo": "\(inReplyTo ?? "none")", "errorCode": "\(status.errorCode ?? 0)",
                    "errorTitle": "\(status.errorTitle ?? "none")",
                ])
            try await directory.recordDeliveryFailure(status, epochSeconds: clock.epochSeconds())
        case .unknown, .stale:
            summary.skipped += 1
        }
    }

    /// Leaves the record of when a webhook last arrived for each account of this delivery
    /// (not those known to route nowhere) for after the answer.
    func recordSightings(of events: [WebhookEvent], routes: [String: TenantRoute?], context: InvocationContext) {
        var accounts: Set<String> = []
        for event in events {
            switch event {
            case .message(let message): accounts.insert(message.accountId)
            case .skipped(_, let accountId, _, _): accounts.insert(accountId)
            case .delivery(let status): accounts.insert(status.accountId)
            case .echo(let echo): accounts.insert(echo.accountId)
            case .threadControl(let control): accounts.insert(control.accountId)
            case .whatsappHealth: continue
            case .invalid: continue
            }
        }
        accounts = accounts.filter { id in
            if let route = routes[id] { return route != nil }
            return true
        }
        guard !accounts.isEmpty else { return }
        let now = clock.epochSeconds()
        let due = sightings.due(accounts.sorted(), now: now)
        guard !due.isEmpty else { return }
        let (sightings, directory, logger) = (self.sightings, self.directory, context.logger)
        context.afterResponse.add { await sightings.record(due, at: now, in: directory, logger: logger) }
    }

    public var function: HTTPFunction {
        HTTPFunction { request, context in try await self.handle(request, context: context) }
    }
}

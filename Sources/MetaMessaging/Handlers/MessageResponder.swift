import Essentials
import FunctionRuntime
import Logging
import MetaAgents
import MetaGraph
import MetaTelemetry
import MetaTenancy
import MetaWebhooks

/// The answer step, the same whether it runs inside `receive` (inline dispatch) or in
/// `process` (SQS dispatch): one turn (the customer's messages that arrived together) is
/// answered once. Unless a person has the conversation (paused), the customer is shown that
/// we are reading, the agent composes the reply, the sender sends it with the tenant's token
/// (in several messages when it is longer than the platform allows), and the ledger records
/// the outcome of every message of the turn.
public struct MessageResponder: Sendable {
    public enum Outcome: Sendable, Equatable {
        /// The messages that carried the reply, in order.
        case answered([SentMessage])
        /// The agent chose not to answer (or only handed the conversation over).
        case noReply
        /// A person has the conversation: recorded, not answered.
        case paused
        /// Given up for good (recorded as failed).
        case failed(String)
        /// Worth another try later: the claims were released.
        case retryLater(String)
        /// Meta throttles the account (or nearly): nothing was sent, the agent was not asked
        /// if it was known before, and the claims were released; worth trying again after
        /// `retryAfterSeconds`, not sooner.
        case throttled(String, retryAfterSeconds: Int)
        /// The reply's first message may have reached Meta (no answer came back), and the
        /// in-doubt rule says not to send it again: recorded `unconfirmed`.
        case unconfirmed(String)
        /// The reply went out, but its outcome could not be written (the store failed): the
        /// claims stay `sending` under their lease, and the caller asks for the delivery again
        /// so a later one settles them (by the in-doubt rule, never a silent 200).
        case unrecorded([SentMessage])

        /// Whether the turn is done with (answered, or given up for good), not to be tried again.
        public var isSettled: Bool {
            switch self {
            case .answered, .noReply, .failed, .unconfirmed, .unrecorded: true
            case .paused, .retryLater, .throttled: false
            }
        }
    }

    /// A message whose claim in the ledger `owner` holds.
    public struct Claimed: Sendable, Equatable {
        public let message: InboundMessage
        public let owner: String
        /// When `receive` accepted it (epoch seconds; nil: now).
        public var acceptedAt: Int64?
        /// The ledger's record of it: the message's id, or for a turn offered after a pause
        /// (whose messages are settled already) a record of the offer's own.
        public var ledgerId: String

        public init(message: InboundMessage, owner: String, acceptedAt: Int64? = nil) {
            self.message = message
            self.owner = owner
            self.acceptedAt = acceptedAt
            self.ledgerId = message.messageId
        }
    }

    public let agent: any Agent
    public let sender: MessageSender
    /// The connections: read for offered turns, and told what a failed send says (code 190).
    public let directory: TenantDirectory
    public let ledger: MessageLedger
    public let agentTimeout: Duration
    /// Time kept back for sending the reply after the agent answers.
    public let sendReserve: Duration
    /// Pauses and customers' names (nil: the agent always answers and knows no names).
    public let conversations: Conversations?
    /// "Seen" and "typing" while the agent works (nil: none).
    public let presence: Presence?
    /// Names from Meta's user profile (nil: WhatsApp's webhook name only).
    public let profiles: CustomerProfiles?
    /// How long a handoff by the agent pauses it (`HANDOFF_PAUSE_MINUTES`).
    public let handoffPauseSeconds: Int64
    /// Meta's throttles as every execution knows them (nil: this execution's own only).
    public var sharedThrottle: SharedThrottle?
    /// Each location's own agent, by its settings (nil: `agent` for every location).
    public var agents: Agents?
    /// What a location that chose nothing gets: "seen" and "typing", what a pause keeps and
    /// whether it is offered after, whether comments are answered.
    public var defaults = SettingsDefaults()
    /// Meta's hourly limit on private replies, counted across executions (nil: not counted).
    public var privateReplies: PrivateReplyBudget?

    /// The clock of the turn's budgets: the ledger's, the one `Services` hands everyone.
    public var clock: WallClock { ledger.clock }

    /// The agent a location's turns go to.
    public func agent(for settings: LocationSettings) -> any Agent {
        guard let agents, settings.agent != nil else { return agent }
        return agents.agent(for: settings.agent)
    }

    /// How long a person's message or the agent's handoff pauses the agent at a location.
    public func pauseSeconds(for settings: LocationSettings) -> Int64 {
        settings.pauseSeconds(or: handoffPauseSeconds)
    }

    public init(
        agent: any Agent, sender: MessageSender, directory: TenantDirectory, ledger: MessageLedger,
        agentTimeout: Duration = .seconds(20), sendReserve: Duration = .milliseconds(1500),
        conversations: Conversations? = nil, presence: Presence? = nil, profiles: CustomerProfiles? = nil,
        handoffPauseSeconds: Int64 = 3600
    ) {
        self.agent = agent
        self.sender = sender
        self.directory = directory
        self.ledger = ledger
        self.agentTimeout = agentTimeout
        self.sendReserve = sendReserve
        self.conversations = conversations
        self.presence = presence
        self.profiles = profiles
        self.handoffPauseSeconds = handoffPauseSeconds
    }

    /// Answers one message whose claim `owner` holds.
    public func answer(
        _ message: InboundMessage, tenant: Tenant, credentials: TenantCredentials, owner: String,
        deadline: ContinuousClock.Instant, retryTransient: Bool, later: AfterResponse? = nil, events: ConversationEvents? = nil, logger: Logger
    ) async -> Outcome {
        await answer(
            [Claimed(message: message, owner: owner)], tenant: tenant, credentials: credentials, deadline: deadline,
            retryTransient: retryTransient, later: later, events: events, logger: logger)
    }

    /// What one answer measured and decided, for the conversation log.
    struct Trace {
        var agentLatencyMs: Int64?
        var graphLatencyMs: Int64?
        var handoff = false
        var errorCode: Int?
        /// The version of what was said during a pause, when this turn carried it to the agent.
        var carriedBacklog: Int64?
        /// A comment's answer: `private`, `public` or `private+public`.
        var commentReply: String?
    }

    /// Answers a turn (below), and puts what became of it in `events`: `reply.sent` with the
    /// sent ids and the agent's and Graph's latency, `reply.none`, `reply.failed` with the
    /// error type and code, `message.paused`, and `conversation.paused` for a handoff.
    public func answer(
        _ turn: [Claimed], tenant: Tenant, credentials: TenantCredentials, deadline: ContinuousClock.Instant,
        retryTransient: Bool, later: AfterResponse? = nil, events: ConversationEvents?, logger: Logger
    ) async -> Outcome {
        var trace = Trace()
        let outcome = await answer(
            turn, tenant: tenant, credentials: credentials, deadline: deadline, retryTransient: retryTransient, later: later, trace: &trace,
            logger: logger)
        // What this turn learned of Meta's throttles, for the other executions.
        await sharedThrottle?.share(logger: logger)
        if let version = trace.carriedBacklog, outcome.isSettled, let conversations, let last = turn.last?.message,
            let account = credentials.sendingAccount(for: last.platform)
        {
            // The agent was told what was said during the pause: it is not told again.
            do {
                try await conversations.clearBacklog(platform: last.platform, account: account, customer: last.senderId, version: version)
            } catch {
                logger.warning("what was said during the pause could not be cleared: the next turn carries it again", metadata: ["error": "\(error)"])
            }
        }
        guard let events, let last = turn.last?.message else { return outcome }
        func event(_ kind: ConversationEvent.Kind, reason: String? = nil) -> ConversationEvent {
            var event = ConversationEvent(
                kind, businessId: tenant.businessId, locationId: tenant.locationId, platform: last.platform,
                conversationId: ConversationEvent.conversationId(tenant, last.platform, last.senderId), messageIds: turn.map(\.message.messageId),
                reason: reason)
            event.agentLatencyMs = trace.agentLatencyMs
            event.graphLatencyMs = trace.graphLatencyMs
            return event
        }
        switch outcome {
        case .answered(let sent) where last.content.isComment:
            var reply = event(.commentReplied, reason: trace.commentReply)
            reply.sentMessageIds = sent.map(\.messageId)
            events.add(reply)
        case .answered(let sent):
            var reply = event(.replySent)
            reply.sentMessageIds = sent.map(\.messageId)
            events.add(reply)
        case .unrecorded(let sent):
            var reply = event(.replySent, reason: "unrecorded")
            reply.sentMessageIds = sent.map(\.messageId)
            events.add(reply)
        case .unconfirmed:
            events.add(event(.replyInDoubt, reason: "not sent again"))
        case .noReply: events.add(event(.noReply))
        case .paused: events.add(event(.paused))
        case .failed(let reason), .retryLater(let reason), .throttled(let reason, _):
            var failed = event(.replyFailed, reason: String(reason.prefix(200)))
            failed.errorCode = trace.errorCode
            if case .retryLater = outcome { failed.reason = "retried later: " + String(reason.prefix(180)) }
            if case .throttled = outcome { failed.reason = "throttled: " + String(reason.prefix(186)) }
            events.add(failed)
        }
        if trace.handoff { events.add(event(.conversationPaused, reason: "agent")) }
        if trace.errorCode == 190 { events.add(event(.connectionInactive, reason: "token expired or revoked")) }
        return outcome
    }

    /// Answers a turn: messages of one customer in one conversation, in order, each claimed.
    /// With `retryTransient`, a failure that a later attempt may fix (agent throttled or
    /// unreachable, Graph 5xx) releases the claims instead of recording a failure. Running
    /// out of time is never a failure of the messages: when the deadline leaves the agent no
    /// time, or cuts the agent's or Graph's call short, the claims are released whatever
    /// `retryTransient` says, and the caller hands the messages back for redelivery.
    /// With `later`, bookkeeping that nothing waits for (a WhatsApp reply's id, the customer's
    /// name) is written after the invocation's answer; without it, at once.
    func answer(
        _ turn: [Claimed], tenant: Tenant, credentials: TenantCredentials, deadline: ContinuousClock.Instant,
        retryTransient: Bool, later: AfterResponse?, trace: inout Trace, logger: Logger
    ) async -> Outcome {
        guard let last = turn.last?.message else { return .noReply }
        let platform = last.platform
        var logger = logger
        logger[metadataKey: "messageId"] = "\(last.messageId)"
        logger[metadataKey: "businessId"] = "\(tenant.businessId)"
        logger[metadataKey: "platform"] = "\(platform.rawValue)"
        logger[metadataKey: "conversationKey"] = "\(Self.conversationKey(tenant, platform, last.senderId))"
        if turn.count > 1 { logger[metadataKey: "turnMessages"] = "\(turn.count)" }
        let account = credentials.sendingAccount(for: platform)
        if let comment = last.content.comment {
            return await answer(
                comment, turn, tenant: tenant, credentials: credentials, account: account, deadline: deadline, retryTransient: retryTransient,
                trace: &trace, logger: logger)
        }

        // A person has the conversation: recorded, not answered.
        var state = Conversations.State()
        if let conversations, let account {
            do {
                state = try await conversations.state(platform: platform, account: account, customer: last.senderId)
            } catch {
                // Answering beats leaving the customer unanswered because of a read.
                logger.warning("the conversation could not be read: answered as if not paused", metadata: ["error": "\(error)"])
            }
            let now = conversations.clock.epochSeconds()
            if state.isPaused(at: now) {
                let detail = "paused (\(state.pausedBy?.rawValue ?? "human") until \(ISO8601.format(epochSeconds: state.pausedUntil ?? now)))"
                logger.info("a person has this conversation: not answered", metadata: ["pausedBy": "\(state.pausedBy?.rawValue ?? "human")"])
                await customerWrote(turn, tenant: tenant, account: account, profile: nil, later: later, logger: logger)
                await keepDuringPause(turn, tenant: tenant, account: account, settings: credentials.settings, conversations: conversations, logger: logger)
                await record(turn, status: .paused, detail: detail, logger: logger)
                return .paused
            }
        }

        // Meta throttles the account (as any execution learned it): no agent call (it would
        // be paid for nothing), no typing.
        if let account { await sharedThrottle?.refresh(account, logger: logger) }
        if let account, let throttled = sender.throttled(account), let seconds = throttled.retryAfterSeconds {
            await customerWrote(turn, tenant: tenant, account: account, profile: nil, later: later, logger: logger)
            return await release(turn, throttled: throttled.errorMessage, retryAfterSeconds: seconds, logger: logger)
        }

        let agentBudget = min(agentTimeout, deadline - clock.instant() - sendReserve)
        guard agentBudget > .milliseconds(50) else {
            return await giveUp(turn, reason: "no time left for the agent", transient: true, retry: true, logger: logger)
        }
        // The agent's budget was cut by the deadline rather than by its own timeout.
        let budgetCut = agentBudget < agentTimeout

        // Seen and typing, while the name is looked up and the agent works.
        let presenceLogger = logger
        let presence = defaults.resolve(credentials.settings).senderActions ? self.presence : nil
        let showing: Task<Void, Never>? = presence.map { presence in
            Task { await presence.showReading(last, credentials: credentials, logger: presenceLogger) }
        }
        let (name, profile) = await customerName(of: last, state: state, credentials: credentials, logger: logger)
        // The profile lookup may have met Meta's throttle: still no agent call then.
        if let account, let throttled = sender.throttled(account), let seconds = throttled.retryAfterSeconds {
            showing?.cancel()
            await customerWrote(turn, tenant: tenant, account: account, profile: profile, later: later, logger: logger)
            return await release(turn, throttled: throttled.errorMessage, retryAfterSeconds: seconds, logger: logger)
        }
        // One write while the agent works: the customer wrote (their service window is open),
        // what Meta said of their name, and that a reply of ours may follow (an echo Meta
        // sends before the Send API answers must not be taken for a person's). Done before
        // anything is sent; a failed write stops nothing here.
        let seconds = (deadline - clock.instant()).components.seconds
        let inFlight = conversations.map { Conversations.InFlight(messageId: last.messageId, until: $0.clock.epochSeconds() + max(0, seconds) + 1) }
        let noting = Task {
            await customerWrote(turn, tenant: tenant, account: account, profile: profile, inFlight: inFlight, later: nil, logger: logger)
        }
        let reply: AgentReply
        let agentStart = clock.instant()
        do {
            var request = AgentRequest(tenant: tenant, turn: turn.map(\.message), customerName: name)
            if !state.backlog.isEmpty {
                request.duringPause = state.backlog.map(AgentRequest.EarlierMessage.init)
                trace.carriedBacklog = state.backlogVersion
            }
            if turn.contains(where: { $0.ledgerId != $0.message.messageId }) { request.afterPause = true }
            reply = try await agent(for: credentials.settings).reply(to: request, timeout: agentBudget)
            trace.agentLatencyMs = Self.milliseconds(since: agentStart, until: clock.instant())
            await noting.value
        } catch {
            trace.agentLatencyMs = Self.milliseconds(since: agentStart, until: clock.instant())
            await noting.value
            showing?.cancel()
            let transient = error.code != .invalidResponse && error.code != .refused
            let outOfTime = error.code == .timeout && budgetCut
            let retry = retryTransient || outOfTime
            if !(transient && retry) { stopTyping(last, credentials: credentials, later: later, logger: logger) }
            return await giveUp(turn, reason: error.description, transient: transient || outOfTime, retry: retry, logger: logger)
        }
        // The reply comes after the typing indicator, never before it.
        await showing?.value

        trace.handoff = reply.handoff
        let parts = reply.text.map { OutboundMessage.parts(of: $0, for: platform) } ?? []
        guard !parts.isEmpty else {
            stopTyping(last, credentials: credentials, later: later, logger: logger)
            if reply.handoff { await handOver(last, account: account, tenant: tenant, seconds: pauseSeconds(for: credentials.settings), logger: logger) }
            logger.info(reply.handoff ? "the agent handed the conversation over without a reply" : "the agent chose not to reply")
            await record(turn, status: .answered, detail: reply.handoff ? "handed over" : "no reply", logger: logger)
            return .noReply
        }
        var sent: [SentMessage] = []
        // The last part's id is recorded with the turn's outcome, in the same write: it is
        // written as soon as it would be alone, and the file store syncs once for both.
        var lastSent: MessageLedger.SentRecord?
        // The claims say a reply is on its way before Meta can have it: a death from here on
        // leaves a record the in-doubt rule settles, never one that is answered as if new.
        if let refusal = await markSending(turn, logger: logger) { return refusal }
        let graphStart = clock.instant()
        defer { trace.graphLatencyMs = Self.milliseconds(since: graphStart, until: clock.instant()) }
        for (index, part) in parts.enumerated() {
            do {
                let message = try await sender.send(
                    OutboundMessage(text: part), platform: platform, recipientId: last.senderId,
                    credentials: credentials, messagingType: .response, deadline: deadline, continuing: index > 0, logger: logger)
                sent.append(message)
                if index == parts.count - 1, !(platform == .whatsapp && later != nil) {
                    lastSent = MessageLedger.SentRecord(sentId: message.messageId, inReplyTo: last.messageId, businessId: tenant.businessId)
                } else {
                    await recordSent(
                        message, answering: last.messageId, businessId: tenant.businessId, platform: platform, later: later,
                        isReply: index == parts.count - 1, logger: logger)
                }
            } catch {
                await directory.record(error, of: credentials, logger: logger)
                trace.errorCode = error.graph?.code
                if index == 0, let seconds = error.retryAfterSeconds {
                    // No "typing off": another call would spend more of the limit (the
                    // indicator goes by itself).
                    return await release(turn, throttled: error.errorMessage, retryAfterSeconds: seconds, logger: logger)
                }
                guard index > 0 else {
                    if let graph = error.graph, graph.kind == .transport, !graph.notSent {
                        // Sent, but no answer came back: Meta may have taken it.
                        return await inDoubt(turn, reason: "\(error.errorType): \(error.errorMessage)", logger: logger)
                    }
                    let outOfTime = error.isOutOfTime
                    let transient = error.graph?.isTransient ?? outOfTime
                    let retry = retryTransient || outOfTime
                    if !(transient && retry) { stopTyping(last, credentials: credentials, later: later, logger: logger) }
                    return await giveUp(
                        turn, reason: "\(error.errorType): \(error.errorMessage)", transient: transient, retry: retry, logger: logger)
                }
                // Part of the reply is out: sending it all again would repeat it.
                logger.error(
                    "the reply was sent in part", metadata: ["sentParts": "\(index)", "parts": "\(parts.count)", "error": "\(error.errorType)"])
                await record(
                    turn, status: .answered, detail: "\(index) of \(parts.count) parts sent; then \(error.errorType): \(error.errorMessage)",
                    logger: logger)
                return .answered(sent)
            }
        }
        logger.info("reply sent", metadata: ["replyId": "\(sent.last?.messageId ?? "")", "parts": "\(parts.count)"])
        let recorded = await record(turn, status: .answered, detail: reply.handoff ? "handed over" : nil, sent: lastSent, logger: logger)
        if reply.handoff { await handOver(last, account: account, tenant: tenant, seconds: pauseSeconds(for: credentials.settings), logger: logger) }
        guard recorded else {
            // Tried once more after the answer; if that fails too, a redelivery settles it.
            let (ledger, detail, lastSent, logger) = (self.ledger, reply.handoff ? "handed over" : nil as String?, lastSent, logger)
            let claims = turn.map { ($0.ledgerId, $0.owner) }
            later?.add {
                do {
                    _ = try await ledger.finish(claims, status: .answered, detail: detail, sent: lastSent)
                } catch {
                    logger.error("the outcome of a sent reply could not be recorded: a redelivery settles it", metadata: ["error": "\(error)"])
                }
            }
            return .unrecorded(sent)
        }
        return .answered(sent)
    }

    /// Answers a comment: the agent is asked (a turn of `kind` `comment`), its reply goes as
    /// the comment's one private reply (one message: a second would be refused), and its
    /// `publicReply` under the comment where the location chose `private_and_public`. No
    /// typing (there is no thread yet) and no service window: the customer's answer to the
    /// private reply opens the conversation. A person holding the conversation holds its
    /// comments too.
    private func answer(
        _ comment: Comment, _ turn: [Claimed], tenant: Tenant, credentials: TenantCredentials, account: String?, deadline: ContinuousClock.Instant,
        retryTransient: Bool, trace: inout Trace, logger: Logger
    ) async -> Outcome {
        guard let last = turn.last?.message else { return .noReply }
        var logger = logger
        logger[metadataKey: "commentId"] = "\(comment.id)"
        let mode = defaults.resolve(credentials.settings).commentReplies
        guard mode != .off else {
            await record(turn, status: .answered, detail: "comment replies off", logger: logger)
            return .noReply
        }
        if let conversations, let account {
            let state = (try? await conversations.state(platform: last.platform, account: account, customer: last.senderId)) ?? Conversations.State()
            let now = conversations.clock.epochSeconds()
            if state.isPaused(at: now) {
                await record(turn, status: .paused, detail: "paused: a person has this customer's conversation", logger: logger)
                return .paused
            }
        }
        if let account { await sharedThrottle?.refresh(account, logger: logger) }
        if let account, let throttled = sender.throttled(account), let seconds = throttled.retryAfterSeconds {
            return await release(turn, throttled: throttled.errorMessage, retryAfterSeconds: seconds, logger: logger)
        }
        let agentBudget = min(agentTimeout, deadline - clock.instant() - sendReserve)
        guard agentBudget > .milliseconds(50) else {
            return await giveUp(turn, reason: "no time left for the agent", transient: true, retry: true, logger: logger)
        }
        let reply: AgentReply
        let agentStart = clock.instant()
        do {
            reply = try await agent(for: credentials.settings).reply(
                to: AgentRequest(tenant: tenant, turn: [last], customerName: comment.username), timeout: agentBudget)
            trace.agentLatencyMs = Self.milliseconds(since: agentStart, until: clock.instant())
        } catch {
            trace.agentLatencyMs = Self.milliseconds(since: agentStart, until: clock.instant())
            let transient = error.code != .invalidResponse && error.code != .refused
            let outOfTime = error.code == .timeout && agentBudget < agentTimeout
            return await giveUp(turn, reason: error.description, transient: transient || outOfTime, retry: retryTransient || outOfTime, logger: logger)
        }
        let publicText = mode == .privateAndPublic ? reply.publicReply : nil
        guard reply.text != nil || publicText != nil else {
            await record(turn, status: .answered, detail: "no reply", logger: logger)
            return .noReply
        }
        if reply.text != nil, let account, let budget = privateReplies, let seconds = await budget.take(account) {
            return await release(
                turn, throttled: "the account's private replies for this hour are spent (Meta allows \(budget.perHour))", retryAfterSeconds: seconds,
                logger: logger)
        }
        if let refusal = await markSending(turn, logger: logger) { return refusal }
        // Our reply in the customer's thread is ours before Meta can echo it.
        if let conversations, let account {
            let until = conversations.clock.epochSeconds() + max(0, (deadline - clock.instant()).components.seconds) + 1
            try? await conversations.replyOnItsWay(
                Conversations.InFlight(messageId: last.messageId, until: until), platform: last.platform, account: account, customer: last.senderId,
                businessId: tenant.businessId)
        }
        let graphStart = clock.instant()
        defer { trace.graphLatencyMs = Self.milliseconds(since: graphStart, until: clock.instant()) }
        var sent: [SentMessage] = []
        var done: [String] = []
        if let text = reply.text {
            // One private reply per comment: a text too long for one message is cut.
            let part = OutboundMessage.parts(of: text, for: last.platform, maxParts: 1).first ?? text
            do {
                let message = try await sender.send(
                    OutboundMessage(text: part), platform: last.platform, recipientId: comment.id, credentials: credentials, deadline: deadline,
                    toComment: true, logger: logger)
                sent.append(message)
                done.append("private")
                await recordSent(message, answering: comment.id, businessId: tenant.businessId, platform: last.platform, later: nil, logger: logger)
            } catch {
                await directory.record(error, of: credentials, logger: logger)
                trace.errorCode = error.graph?.code
                if let seconds = error.retryAfterSeconds {
                    return await release(turn, throttled: error.errorMessage, retryAfterSeconds: seconds, logger: logger)
                }
                if let graph = error.graph, graph.kind == .transport, !graph.notSent {
                    return await inDoubt(turn, reason: "\(error.errorType): \(error.errorMessage)", logger: logger)
                }
                let transient = error.graph?.isTransient ?? error.isOutOfTime
                return await giveUp(
                    turn, reason: "\(error.errorType): \(error.errorMessage)", transient: transient, retry: retryTransient || error.isOutOfTime,
                    logger: logger)
            }
        }
        if let publicText {
            do {
                let id = try await sender.publicReply(
                    String(publicText.prefix(2200)), to: comment.id, platform: last.platform, credentials: credentials, deadline: deadline, logger: logger)
                sent.append(SentMessage(recipientId: comment.id, messageId: id))
                done.append("public")
                // Its own webhook comes back as a comment: known as ours by this id.
                do {
                    try await ledger.recordSent(id, answering: comment.id, businessId: tenant.businessId)
                } catch {
                    logger.warning("the public reply's id could not be recorded: its webhook is skipped as the business's own", metadata: ["error": "\(error)"])
                }
            } catch {
                // The private reply (if any) stands; the public one is not tried again (a second
                // post would be a second public reply).
                trace.errorCode = error.graph?.code
                logger.warning("the public reply was not posted", metadata: ["error": "\(error.errorType)"])
                if sent.isEmpty {
                    await record(turn, status: .failed, detail: "public reply: \(error.errorType): \(error.errorMessage)", logger: logger)
                    return .failed("public reply: \(error.errorType)")
                }
            }
        }
        trace.commentReply = done.joined(separator: "+")
        trace.handoff = reply.handoff
        logger.info("comment answered", metadata: ["replies": "\(done.joined(separator: "+"))"])
        let recorded = await record(
            turn, status: .answered, detail: "comment: \(done.joined(separator: "+"))",
            sent: sent.first.map { MessageLedger.SentRecord(sentId: $0.messageId, inReplyTo: comment.id, businessId: tenant.businessId) }, logger: logger)
        if reply.handoff, let account {
            await handOver(last, account: account, tenant: tenant, seconds: pauseSeconds(for: credentials.settings), logger: logger)
        }
        return recorded ? .answered(sent) : .unrecorded(sent)
    }

    /// The customer's name: the webhook's (WhatsApp), the one kept for the conversation, or
    /// Meta's user profile, asked at most once a day per conversation and for at most the
    /// lookup's short timeout; with what is new to keep of it.
    private func customerName(
        of message: InboundMessage, state: Conversations.State, credentials: TenantCredentials, logger: Logger
    ) async -> (String?, Conversations.ProfileNote?) {
        guard let conversations, credentials.sendingAccount(for: message.platform) != nil else { return (message.senderName, nil) }
        let now = conversations.clock.epochSeconds()
        if let name = message.senderName {
            return (name, name != state.customerName ? Conversations.ProfileNote(name: name, looked: false) : nil)
        }
        if let checked = state.profileCheckedAt, now - checked < Conversations.profileRecheckSeconds { return (state.customerName, nil) }
        guard let profiles else { return (state.customerName, nil) }
        switch await profiles.name(of: message.senderId, platform: message.platform, credentials: credentials, logger: logger) {
        case .found(let name):
            return (name ?? state.customerName, Conversations.ProfileNote(name: name ?? state.customerName, looked: true))
        case .unknown:
            return (state.customerName, nil)
        }
    }

    /// Records that the customer wrote, at the turn's acceptance, with what is new of their
    /// name: after the answer with `later`, else at once.
    private func customerWrote(
        _ turn: [Claimed], tenant: Tenant, account: String?, profile: Conversations.ProfileNote?, inFlight: Conversations.InFlight? = nil,
        later: AfterResponse?, logger: Logger
    ) async {
        guard let conversations, let account, let last = turn.last?.message else { return }
        let at = turn.compactMap(\.acceptedAt).max()
        let write: @Sendable () async -> Void = {
            do {
                try await conversations.customerWrote(
                    platform: last.platform, account: account, customer: last.senderId, businessId: tenant.businessId, at: at, profile: profile,
                    inFlight: inFlight)
            } catch {
                logger.warning("could not record the customer's message time", metadata: ["error": "\(error)"])
            }
        }
        if let later { later.add(write) } else { await write() }
    }

    /// Keeps the turn's messages (their text only where the location allows it) for the
    /// agent's next turn, and, where the location wants it, to be offered once the pause ends.
    private func keepDuringPause(
        _ turn: [Claimed], tenant: Tenant, account: String, settings: LocationSettings, conversations: Conversations, logger: Logger
    ) async {
        guard let last = turn.last?.message else { return }
        let rules = defaults.resolve(settings)
        let now = conversations.clock.epochSeconds()
        let notes = turn.map { claimed in
            Conversations.PauseNote(
                messageId: claimed.message.messageId, from: .customer, at: claimed.acceptedAt ?? now,
                text: rules.keepTextDuringPause ? claimed.message.content.agentText : nil)
        }
        do {
            try await conversations.keepDuringPause(
                notes, platform: last.platform, account: account, customer: last.senderId, tenant: tenant, offer: rules.answerAfterPause)
        } catch {
            logger.warning("what the customer said during the pause could not be kept", metadata: ["error": "\(error)"])
        }
    }

    /// Offers a pause's waiting messages to the agent once, as one turn (`answerAfterPause`):
    /// claimed in the ledger under the offer's own record, so two sweeps answer it once.
    public func offer(
        _ due: Conversations.DueOffer, owner: String, deadline: ContinuousClock.Instant, events: ConversationEvents?, logger: Logger
    ) async -> Outcome? {
        let waiting = due.state.backlog.filter { $0.from == .customer }
        guard let last = waiting.last, let conversations else { return nil }
        let ledgerId = "after-pause#\(due.platform.rawValue)#\(due.account)#\(due.customer)#\(due.state.backlogVersion)"
        let credentials: TenantCredentials?
        do {
            credentials = try await directory.credentials(tenant: due.tenant)
            switch try await ledger.claim(ledgerId, businessId: due.tenant.businessId, owner: owner, as: .answering) {
            case .claimed: break
            default: return nil
            }
        } catch {
            logger.warning("a pause's waiting messages could not be offered now", metadata: ["error": "\(error)"])
            return nil
        }
        if let credentials, !defaults.resolve(credentials.settings).answerAfterPause {
            // The location no longer wants it: what was said waits for the customer's next turn.
            _ = try? await ledger.finish(ledgerId, owner: owner, status: .answered, detail: "not offered: answerAfterPause is off")
            try? await conversations.dropOffer(platform: due.platform, account: due.account, customer: due.customer)
            return nil
        }
        guard let credentials, credentials.isActive else {
            try? await conversations.clearBacklog(platform: due.platform, account: due.account, customer: due.customer, version: due.state.backlogVersion)
            _ = try? await ledger.finish(ledgerId, owner: owner, status: .failed, detail: "the location has no active connection")
            return nil
        }
        let text = waiting.compactMap(\.text).joined(separator: "\n")
        let message = InboundMessage(
            platform: due.platform, messageId: last.messageId, accountId: due.account, senderId: due.customer, timestamp: last.at * 1000,
            content: .text(text))
        var claimed = Claimed(message: message, owner: owner, acceptedAt: last.at)
        claimed.ledgerId = ledgerId
        return await answer(
            [claimed], tenant: due.tenant, credentials: credentials, deadline: deadline, retryTransient: true, later: nil, events: events, logger: logger)
    }

    /// The agent handed over: it stays quiet in this conversation for the handoff pause.
    private func handOver(_ message: InboundMessage, account: String?, tenant: Tenant, seconds: Int64, logger: Logger) async {
        guard let conversations, let account else {
            logger.warning("the agent handed over, but conversations are not kept: nothing paused")
            return
        }
        do {
            try await conversations.pause(
                platform: message.platform, account: account, customer: message.senderId, businessId: tenant.businessId,
                seconds: seconds, by: .agent)
            logger.info("the agent handed the conversation to a person", metadata: ["pauseSeconds": "\(seconds)"])
        } catch {
            logger.error("the agent handed over, but the pause could not be written", metadata: ["error": "\(error)"])
        }
    }

    /// Ids only. On Messenger and Instagram at once, so the echo of our own reply is known as
    /// ours when it arrives; on WhatsApp (for its delivery statuses, seconds later) after the
    /// answer when `later` is given.
    private func recordSent(
        _ sent: SentMessage, answering inbound: String, businessId: String, platform: Platform, later: AfterResponse?, isReply: Bool = false,
        logger: Logger
    ) async {
        let ledger = self.ledger
        let write: @Sendable () async -> Void = {
            do {
                if isReply {
                    // The turn's outcome went before this id: the id joins its record.
                    try await ledger.recordReply(sent.messageId, answering: inbound, businessId: businessId)
                } else {
                    try await ledger.recordSent(sent.messageId, answering: inbound, businessId: businessId)
                }
            } catch {
                logger.warning("could not record the sent message's id", metadata: ["error": "\(error)"])
            }
        }
        if platform == .whatsapp, let later { later.add(write) } else { await write() }
    }

    private func stopTyping(_ message: InboundMessage, credentials: TenantCredentials, later: AfterResponse?, logger: Logger) {
        guard let presence, defaults.resolve(credentials.settings).senderActions, let later else { return }
        later.add { await presence.stopTyping(message, credentials: credentials, logger: logger) }
    }

    /// What the logs name a conversation by: the first 16 hex digits of the SHA-256 of its
    /// `conversationId` (never the customer's id itself: on WhatsApp it is a phone number).
    /// `printf '%s' 'B0100001:L0100001:whatsapp:16505551234' | sha256sum | cut -c1-16`.
    public static func conversationKey(_ tenant: Tenant, _ platform: Platform, _ customer: String) -> String {
        String(Hex.encode(SHA256.hash(Array(ConversationEvent.conversationId(tenant, platform, customer).utf8))).prefix(16))
    }

    static func milliseconds(since start: ContinuousClock.Instant, until end: ContinuousClock.Instant) -> Int64 {
        let elapsed = end - start
        return elapsed.components.seconds * 1000 + elapsed.components.attoseconds / 1_000_000_000_000_000
    }

    private func giveUp(_ turn: [Claimed], reason: String, transient: Bool, retry: Bool, logger: Logger) async -> Outcome {
        if transient, retry {
            logger.warning("answer failed, will be retried", metadata: ["reason": "\(reason)"])
            await releaseClaims(turn, logger: logger)
            return .retryLater(reason)
        }
        logger.error("answer failed", metadata: ["reason": "\(reason)"])
        await record(turn, status: .failed, detail: reason, logger: logger)
        return .failed(reason)
    }

    /// A throttled account's turn goes back whatever the caller retries otherwise: it is
    /// Meta's limit, not the messages', that failed.
    private func release(_ turn: [Claimed], throttled reason: String, retryAfterSeconds: Int, logger: Logger) async -> Outcome {
        logger.warning("not answered now: the account is throttled", metadata: ["retryAfterSeconds": "\(retryAfterSeconds)"])
        await releaseClaims(turn, logger: logger)
        return .throttled(reason, retryAfterSeconds: retryAfterSeconds)
    }

    private func releaseClaims(_ turn: [Claimed], logger: Logger) async {
        for claimed in turn {
            do {
                try await ledger.release(claimed.ledgerId, owner: claimed.owner)
            } catch {
                logger.error("could not release the claim", metadata: ["error": "\(error)"])
            }
        }
    }

    /// Records the turn's outcome; false when a claim's outcome could not be written (the
    /// records keep their claims and leases, which stop a redelivery within the lease).
    @discardableResult
    private func record(
        _ turn: [Claimed], status: MessageLedger.Status, detail: String?, sent: MessageLedger.SentRecord? = nil, logger: Logger
    ) async -> Bool {
        let outcome: MessageLedger.FinishOutcome
        do {
            outcome = try await ledger.finish(turn.map { ($0.ledgerId, $0.owner) }, status: status, detail: detail, sent: sent)
        } catch {
            logger.error("could not record the outcome", metadata: ["error": "\(error)"])
            if sent != nil { logger.warning("could not record the sent message's id", metadata: ["error": "\(error)"]) }
            return false
        }
        var written = true
        for claim in outcome.claims {
            switch claim {
            case .success(true): break
            case .success(false): logger.warning("the claim was taken over before the outcome was recorded")
            case .failure(let error):
                written = false
                logger.error("could not record the outcome", metadata: ["error": "\(error)"])
            }
        }
        if case .failure(let error)? = outcome.sent {
            logger.warning("could not record the sent message's id", metadata: ["error": "\(error)"])
        }
        return written
    }

    /// Marks the turn's claims `sending`; nil when every one is marked, else the outcome that
    /// stops the send (nothing is sent unless the ledger can say it may have been).
    private func markSending(_ turn: [Claimed], logger: Logger) async -> Outcome? {
        do {
            let marked = try await ledger.markSending(turn.map { ($0.ledgerId, $0.owner) })
            guard marked.allSatisfy({ $0 }) else {
                logger.warning("a claim was taken over before the reply went out: not sent")
                await releaseClaims(turn, logger: logger)
                return .retryLater("a claim was taken over before the reply went out")
            }
            return nil
        } catch {
            logger.error("the ledger could not be written before sending: not sent", metadata: ["error": "\(error)"])
            await releaseClaims(turn, logger: logger)
            return .retryLater("the ledger could not be written before sending (\(error))")
        }
    }

    /// The reply's first message may have reached Meta without an answer: the in-doubt rule.
    private func inDoubt(_ turn: [Claimed], reason: String, logger: Logger) async -> Outcome {
        switch ledger.inDoubt {
        case .sendAgain:
            logger.warning("the reply may have been sent: it will be sent again (REPLY_IN_DOUBT=resend)", metadata: ["reason": "\(reason)"])
            await releaseClaims(turn, logger: logger)
            return .retryLater(reason)
        case .doNotSendAgain:
            logger.warning("the reply may have been sent: not sent again (REPLY_IN_DOUBT=skip)", metadata: ["reason": "\(reason)"])
            await record(turn, status: .unconfirmed, detail: "a reply may have been sent (\(reason)): not sent again", logger: logger)
            return .unconfirmed(reason)
        }
    }
}

import FunctionRuntime
import Logging

/// The answer step, the same whether it runs inside `receive` (inline dispatch) or in
/// `process` (SQS dispatch): the agent composes the reply, the sender sends it with the
/// tenant's token, the ledger records the outcome.
public struct MessageResponder: Sendable {
    public enum Outcome: Sendable, Equatable {
        case answered(SentMessage)
        /// The agent chose not to answer.
        case noReply
        /// Given up for good (recorded as failed).
        case failed(String)
        /// Worth another try later: the claim was released.
        case retryLater(String)
    }

    public let agent: any Agent
    public let sender: MessageSender
    public let ledger: MessageLedger
    public let agentTimeout: Duration
    /// Time kept back for sending the reply after the agent answers.
    public let sendReserve: Duration

    public init(
        agent: any Agent, sender: MessageSender, ledger: MessageLedger,
        agentTimeout: Duration = .seconds(20), sendReserve: Duration = .milliseconds(1500)
    ) {
        self.agent = agent
        self.sender = sender
        self.ledger = ledger
        self.agentTimeout = agentTimeout
        self.sendReserve = sendReserve
    }

    /// Answers a message whose claim `owner` holds. With `retryTransient`, a failure that a
    /// later attempt may fix (agent throttled or unreachable, Graph 5xx) releases the claim
    /// instead of recording a failure. Running out of time is never a failure of the message:
    /// when the deadline leaves the agent no time, or cuts the agent's or Graph's call short,
    /// the claim is released whatever `retryTransient` says, and the caller hands the message
    /// back for redelivery (`retryLater`).
    /// With `later`, the sent message's id is recorded after the invocation's answer (it is
    /// bookkeeping for delivery statuses, which arrive seconds later); without it, at once.
    public func answer(
        _ message: InboundMessage, tenant: Tenant, credentials: TenantCredentials, owner: String,
        deadline: ContinuousClock.Instant, retryTransient: Bool, later: AfterResponse? = nil, logger: Logger
    ) async -> Outcome {
        var logger = logger
        logger[metadataKey: "messageId"] = "\(message.messageId)"
        logger[metadataKey: "businessId"] = "\(tenant.businessId)"
        logger[metadataKey: "platform"] = "\(message.platform.rawValue)"

        let agentBudget = min(agentTimeout, deadline - ContinuousClock.now - sendReserve)
        guard agentBudget > .milliseconds(50) else {
            return await giveUp(message, owner: owner, reason: "no time left for the agent", transient: true, retry: true, logger: logger)
        }
        // The agent's budget was cut by the deadline rather than by its own timeout.
        let budgetCut = agentBudget < agentTimeout
        let reply: String?
        do {
            reply = try await agent.reply(to: AgentRequest(tenant: tenant, message: message), timeout: agentBudget)
        } catch {
            let transient = error.code != .invalidResponse && error.code != .refused
            let outOfTime = error.code == .timeout && budgetCut
            return await giveUp(
                message, owner: owner, reason: error.description, transient: transient || outOfTime,
                retry: retryTransient || outOfTime, logger: logger)
        }
        guard let reply, !reply.isEmpty else {
            logger.info("the agent chose not to reply")
            await record(message, owner: owner, status: .answered, detail: "no reply", logger: logger)
            return .noReply
        }
        do {
            let sent = try await sender.send(
                .reply(reply, for: message.platform), platform: message.platform, recipientId: message.senderId,
                credentials: credentials, messagingType: .response, deadline: deadline, logger: logger)
            logger.info("reply sent", metadata: ["replyId": "\(sent.messageId)"])
            // Ids only: a later delivery status (WhatsApp) finds the message it answered.
            let (ledger, inbound, businessId, log) = (self.ledger, message.messageId, tenant.businessId, logger)
            let recordSent: @Sendable () async -> Void = {
                do {
                    try await ledger.recordSent(sent.messageId, answering: inbound, businessId: businessId)
                } catch {
                    log.warning("could not record the sent message's id", metadata: ["error": "\(error)"])
                }
            }
            if let later { later.add(recordSent) } else { await recordSent() }
            await record(message, owner: owner, status: .answered, detail: nil, logger: logger)
            return .answered(sent)
        } catch {
            let outOfTime = error.isOutOfTime
            let transient = error.graph?.isTransient ?? outOfTime
            return await giveUp(
                message, owner: owner, reason: "\(error.errorType): \(error.errorMessage)",
                transient: transient, retry: retryTransient || outOfTime, logger: logger)
        }
    }

    private func giveUp(_ message: InboundMessage, owner: String, reason: String, transient: Bool, retry: Bool, logger: Logger) async -> Outcome {
        if transient, retry {
            logger.warning("answer failed, will be retried", metadata: ["reason": "\(reason)"])
            do {
                try await ledger.release(message.messageId, owner: owner)
            } catch {
                logger.error("could not release the claim", metadata: ["error": "\(error)"])
            }
            return .retryLater(reason)
        }
        logger.error("answer failed", metadata: ["reason": "\(reason)"])
        await record(message, owner: owner, status: .failed, detail: reason, logger: logger)
        return .failed(reason)
    }

    private func record(_ message: InboundMessage, owner: String, status: MessageLedger.Status, detail: String?, logger: Logger) async {
        do {
            if try await !ledger.finish(message.messageId, owner: owner, status: status, detail: detail) {
                logger.warning("the claim was taken over before the outcome was recorded")
            }
        } catch {
            // The reply is out; the record keeps its claim and its lease, which stops a
            // redelivery within the lease. Logged for the operator.
            logger.error("could not record the outcome", metadata: ["error": "\(error)"])
        }
    }
}

import Essentials
import HTTPTransport
import Logging
import MetaWebhooks

/// What Meta answered for a sent message.
public struct SentMessage: Sendable, Codable, Equatable {
    public let recipientId: String
    public let messageId: String

    public init(recipientId: String, messageId: String) {
        self.recipientId = recipientId
        self.messageId = messageId
    }
}

/// Sends one message for one tenant through the right Graph endpoint, shared by `send` and
/// by the reply step of `receive` / `process`:
/// Instagram and Messenger `POST /{version}/{page-id}/messages`, WhatsApp
/// `POST /{version}/{phone-number-id}/messages`.
///
/// Transient Graph errors are retried with jittered exponential backoff while the deadline
/// leaves room. It writes nothing of tenancy: code 190 (an expired or revoked token) is the
/// outcome `SendError.tokenExpired`, which the caller records (`TenantDirectory.record`).
public struct MessageSender: Sendable {
    public let graph: GraphClient
    /// `graph.instagram.com`, for Instagram-Login connections (nil: not configured here).
    public let instagramGraph: GraphClient?
    public let backoff: Backoff
    public let requestTimeout: Duration
    /// The accounts Meta throttles, or nearly: not sent to until the time Meta gave.
    public let throttle: AccountThrottle
    /// At most so many Send API calls to one account at once from this execution.
    public let gate: AccountGate
    public let clock: WallClock

    public init(
        graph: GraphClient, instagramGraph: GraphClient? = nil,
        backoff: Backoff = Backoff(maxAttempts: 3, base: .milliseconds(200), cap: .seconds(2)),
        requestTimeout: Duration = .seconds(10), throttle: AccountThrottle = AccountThrottle(), gate: AccountGate = AccountGate(),
        clock: WallClock = .system
    ) {
        self.clock = clock
        self.gate = gate
        self.graph = graph
        self.instagramGraph = instagramGraph
        self.backoff = backoff
        self.requestTimeout = requestTimeout
        self.throttle = throttle
    }

    /// `SendError.throttled` when Meta throttles `account` (or nearly): nothing is sent.
    public func throttled(_ account: String) -> SendError? {
        throttle.remaining(account).map {
            SendError.throttled("account \(account) is at its Graph API rate limit: not sent; try again in \($0) s", retryAfterSeconds: $0, graph: nil)
        }
    }

    public func send(
        _ message: OutboundMessage, platform: Platform, recipientId: String, credentials: some GraphConnection,
        messagingType: MessagingType = .response, deadline: ContinuousClock.Instant, continuing: Bool = false, toComment: Bool = false,
        logger: Logger
    ) async throws(SendError) -> SentMessage {
        if toComment, platform == .whatsapp { throw SendError.invalidInput("a private reply to a comment goes on Instagram or Messenger only") }
        guard credentials.isActive else {
            throw SendError.inactiveCredentials(
                "the credentials of business \(credentials.businessId) need reconnection"
                    + (credentials.inactiveReason.map { " (\($0))" } ?? ""))
        }
        guard let account = credentials.sendingAccount(for: platform) else {
            throw SendError.missingAccount("business \(credentials.businessId) has no \(platform == .whatsapp ? "WhatsApp phone number" : "Page") connected")
        }
        guard let token = credentials.token(for: platform) else {
            throw SendError.missingAccount(
                platform == .whatsapp
                    ? "business \(credentials.businessId) has no WhatsApp token for its number: connect WhatsApp (the Page token never sends on WhatsApp)"
                    : "business \(credentials.businessId) has no Page token: connect its Facebook Page")
        }
        guard let graph = GraphClient.speaking(for: credentials, on: platform, facebook: graph, instagram: instagramGraph) else {
            throw SendError.missingAccount(
                "business \(credentials.businessId) connected Instagram through Instagram Login, which is not configured here (INSTAGRAM_APP_ID)")
        }
        // The rest of a reply already begun goes out: only Meta's own refusal stops it, not an
        // account paused for being near its limit.
        if !continuing, let throttled = throttled(account) { throw throttled }
        let body = message.graphBody(platform: platform, recipientId: recipientId, messagingType: messagingType, toComment: toComment).encoded()
        // A retry needs the backoff's pause plus room for a whole Graph call.
        return try await backoff.run(clock: clock, deadline: deadline, room: .seconds(1)) { (_: Int) async throws(SendError) -> SentMessage in
            try await attempt(
                body, account: account, token: token, graph: graph, credentials: credentials, recipientId: recipientId,
                deadline: deadline, toComment: toComment, logger: logger)
        } retrying: { error in
            error.transientGraphError != nil
        } willRetry: { error, attempt, _ in
            let graph = error.transientGraphError
            logger.warning(
                "transient Graph error, retrying",
                metadata: ["code": "\(graph?.code ?? 0)", "httpStatus": "\(graph?.httpStatus ?? 0)", "attempt": "\(attempt)"])
        }
    }

    /// One Send API call, Meta's answer read into what it means. Returns an outcome and writes
    /// nothing but this execution's throttle memory.
    private func attempt(
        _ body: [UInt8], account: String, token: String, graph: GraphClient, credentials: some GraphConnection, recipientId: String,
        deadline: ContinuousClock.Instant, toComment: Bool, logger: Logger
    ) async throws(SendError) -> SentMessage {
        guard clock.remaining(until: deadline) > .milliseconds(100) else {
            throw SendError.deadlineExceeded("no time left to send the message before the invocation's deadline", graph: nil)
        }
        do {
            let requestTimeout = self.requestTimeout
            let clock = self.clock
            let (answer, usage) = try await gate.around(account) { () async throws(GraphError) in
                // The time left once this call has its place.
                let timeout = min(requestTimeout, max(.zero, clock.remaining(until: deadline)))
                return try await graph.callReportingUsage("POST", "\(account)/messages", token: token, json: body, timeout: timeout)
            }
            if let usage, let seconds = throttle.observe(usage, account: account) {
                logger.warning(
                    "an account is near its Graph API rate limit: left alone for a while",
                    metadata: ["account": "\(account)", "usagePercent": "\(usage.highestPercent)", "pauseSeconds": "\(seconds)"])
            }
            guard let messageId = answer["message_id"]?.id ?? answer["messages"]?.array?.first?["id"]?.id else {
                throw SendError.invalidGraphResponse("the Graph API accepted the message but returned no message id")
            }
            let recipient = answer["recipient_id"]?.id ?? answer["contacts"]?.array?.first?["wa_id"]?.id ?? recipientId
            return SentMessage(recipientId: recipient, messageId: messageId)
        } catch let error as SendError {
            throw error
        } catch let error as GraphError {
            if error.isExpiredToken { throw SendError.tokenExpired(error) }
            if let refusal = Self.refusal(error, toComment: toComment) { throw refusal }
            if error.isThrottled {
                // Retrying now would only spend more of the limit: the account is left
                // alone for the time Meta gives, and the message goes back.
                let seconds = error.secondsToRegainAccess
                throttle.pause(account, seconds: seconds)
                logger.warning(
                    "Meta throttles an account: not sent, tried again later",
                    metadata: [
                        "account": "\(account)", "code": "\(error.code ?? 0)", "usagePercent": "\(error.usage?.highestPercent ?? 0)",
                        "retryAfterSeconds": "\(seconds)",
                    ])
                throw SendError.throttled(
                    "Meta throttles account \(account) (code \(error.code ?? 0)): try again in \(seconds) s", retryAfterSeconds: seconds, graph: error)
            }
            if error.kind == .transport, clock.remaining(until: deadline) <= .milliseconds(100) {
                // The call was cut short by the deadline, not refused: out of time.
                throw SendError.deadlineExceeded("the Graph API did not answer before the invocation's deadline", graph: error)
            }
            throw error.kind == .transport ? SendError.graphUnreachable(error) : SendError.graphAPIError(error)
        } catch {
            throw SendError.graphAPIError(GraphError(kind: .invalidResponse, message: "\(error)"))
        }
    }

    /// A public reply under a comment: Instagram `POST /{comment-id}/replies`, Facebook
    /// `POST /{comment-id}/comments`, with `message`. Returns the new comment's id (recorded
    /// by the caller, so its webhook is known as ours). Not retried: a second post would be a
    /// second public reply.
    public func publicReply(
        _ text: String, to commentId: String, platform: Platform, credentials: some GraphConnection, deadline: ContinuousClock.Instant, logger: Logger
    ) async throws(SendError) -> String {
        guard platform != .whatsapp, let token = credentials.token(for: platform) else {
            throw SendError.missingAccount("business \(credentials.businessId) has no token to reply publicly on \(platform.rawValue)")
        }
        guard let graph = GraphClient.speaking(for: credentials, on: platform, facebook: graph, instagram: instagramGraph) else {
            throw SendError.missingAccount("Instagram Login is not configured here (INSTAGRAM_APP_ID)")
        }
        let edge = platform == .instagram ? "replies" : "comments"
        let timeout = min(requestTimeout, max(.zero, clock.remaining(until: deadline)))
        do {
            let answer = try await graph.call(
                "POST", "\(commentId)/\(edge)", token: token, json: JSON.dictionary(["message": .string(text)]).encoded(), timeout: timeout)
            guard let id = answer["id"]?.id else { throw SendError.invalidGraphResponse("the Graph API accepted the public reply but returned no id") }
            return id
        } catch let error as SendError {
            throw error
        } catch let error as GraphError {
            if let refusal = Self.refusal(error, toComment: true) { throw refusal }
            throw error.kind == .transport ? SendError.graphUnreachable(error) : SendError.graphAPIError(error)
        } catch {
            throw SendError.graphAPIError(GraphError(kind: .invalidResponse, message: "\(error)"))
        }
    }

    /// Meta's refusals that have an error type of their own: templates (WhatsApp 132xxx) and
    /// the customer service window (WhatsApp 131047, Messenger and Instagram 10 / 2018278).
    static func refusal(_ error: GraphError, toComment: Bool = false) -> SendError? {
        guard error.kind == .graph, let code = error.code else { return nil }
        if toComment {
            switch (code, error.subcode) {
            case (10900, _): return .commentAlreadyAnswered(error)
            case (10903, _): return .commentNotAnswerable(error)
            case (100, 33?): return .commentGone(error)
            default: break
            }
        }
        switch code {
        case 132001: return .templateNotFound(error)
        case 132000, 132012: return .templateParameterMismatch(error)
        case 132015, 132016: return .templateUnavailable(error)
        case 132002...132999: return .templateRejected(error)
        case 131047:
            return .outsideWindow("Meta refused: more than 24 hours have passed since the customer last wrote; send a template (\(error))", closedAt: nil)
        case 10 where error.subcode == 2018278:
            return .outsideWindow("Meta refused: the message is outside the allowed window (\(error))", closedAt: nil)
        default: return nil
        }
    }
}

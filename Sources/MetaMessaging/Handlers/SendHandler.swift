import Essentials
import FunctionRuntime
import KeyValueStore
import Logging
import MetaGraph
import MetaTelemetry
import MetaTenancy
import MetaWebhooks

/// The send route's HTTP contract: `SendError`'s status, `errorType` and message are what its
/// callers get (a Lambda function error directly, a proxy response through API Gateway).
extension SendError: HTTPResponseError {}

/// `send`: one message for one tenant, on demand (SPEC section 4, send). Invoked directly
/// with `{"businessId","platform","recipientId","message"}`, or through API Gateway with that
/// JSON as the body. Input is validated before any store or network call.
public struct SendHandler: Sendable {
    public struct Request: Sendable, Equatable {
        public let businessId: String
        /// The location whose connection sends (optional for a business with one connection).
        public var locationId: String? = nil
        /// Or the platform account that sends (a Page id, an Instagram account id, a phone number id).
        public var accountId: String? = nil
        public let platform: Platform
        public let recipientId: String
        public let message: OutboundMessage
        public let messagingType: MessagingType
        /// The caller states a person wrote this message (not the agent): on Messenger and
        /// Instagram it may then go with the `HUMAN_AGENT` tag up to 7 days after the
        /// customer's last message. It also pauses the agent in the conversation.
        public var humanAgent = false
        /// A text longer than the platform allows goes as several messages (at most 5).
        public var split = false
        /// `recipientId` is a comment's id (`recipientCommentId`): the message is that comment's
        /// one private reply, outside any window, within 7 days of the comment.
        public var toComment = false
    }

    public let directory: TenantDirectory
    public let sender: MessageSender
    /// Where the sent message's id is recorded, for its delivery statuses (WhatsApp).
    public let ledger: MessageLedger?
    /// The customer service window: a free-form message outside it is refused before any
    /// call (nil: not checked, Meta's refusal is reported as it comes).
    public let conversations: Conversations?
    /// How long a person's message (`humanAgent`) or a pause without `minutes` pauses the agent.
    public let pauseSeconds: Int64
    /// The conversation log and the metrics, sent after the answer.
    public var telemetry: Telemetry = .none

    public init(
        directory: TenantDirectory, sender: MessageSender, ledger: MessageLedger? = nil, conversations: Conversations? = nil,
        pauseSeconds: Int64 = 3600
    ) {
        self.directory = directory
        self.sender = sender
        self.ledger = ledger
        self.conversations = conversations
        self.pauseSeconds = pauseSeconds
    }

    /// Reads and validates the input. Every problem is a `SendError` with its own type.
    public static func parse(_ document: JSON) throws(SendError) -> Request {
        guard document.object != nil else { throw SendError.invalidInput("the input must be a JSON object") }
        func string(_ key: String, in object: JSON) throws(SendError) -> String? {
            switch object[key] {
            case nil, .null?: return nil
            case .string(let value)?: return value
            default: throw SendError.invalidInput("\(key) must be a string")
            }
        }
        guard let businessId = try string("businessId", in: document), !businessId.trimmingSpaces().isEmpty else {
            throw SendError.missingBusinessId("businessId is required")
        }
        guard let platformName = try string("platform", in: document), let platform = Platform(rawValue: platformName) else {
            throw SendError.unknownPlatform("platform must be one of instagram, messenger, whatsapp")
        }
        let commentId = try string("recipientCommentId", in: document).flatMap { $0.trimmingSpaces().isEmpty ? nil : $0 }
        let customerId = try string("recipientId", in: document).flatMap { $0.trimmingSpaces().isEmpty ? nil : $0 }
        guard let recipientId = commentId ?? customerId, commentId == nil || customerId == nil else {
            throw SendError.missingRecipient("recipientId (a customer) or recipientCommentId (a comment, for its private reply) is required, not both")
        }
        if commentId != nil, platform == .whatsapp {
            throw SendError.invalidInput("recipientCommentId is for Instagram and Messenger comments")
        }
        guard let message = document["message"], message.object != nil else {
            throw SendError.emptyMessage("message must be an object with text or an attachment")
        }
        var outbound = OutboundMessage(text: try string("text", in: message))
        if let template = message["template"] {
            guard template.object != nil, let name = try string("name", in: template) else {
                throw SendError.invalidTemplate("template must be {\"name\", \"language\", \"components\"}")
            }
            let language: String
            switch template["language"] {
            case .string(let code)?: language = code
            case let object? where object.object != nil:
                guard let code = try string("code", in: object) else { throw SendError.invalidTemplate("template.language needs a code") }
                language = code
            default: throw SendError.invalidTemplate("template.language is required (a code such as en_US)")
            }
            let components: [JSON]
            switch template["components"] {
            case nil, .null?: components = []
            case .array(let list)?: components = list
            default: throw SendError.invalidTemplate("template.components must be an array")
            }
            outbound.template = .init(name: name, language: language, components: components)
        }
        if let attachment = message["attachment"] {
            guard attachment.object != nil, let type = try string("type", in: attachment), let url = try string("url", in: attachment) else {
                throw SendError.invalidAttachment("attachment must be {\"type\": image|video|audio|file, \"url\": ...}")
            }
            outbound.attachment = .init(type: type, url: url)
        }
        if let replies = message["quickReplies"] {
            guard let array = replies.array else { throw SendError.invalidQuickReply("quickReplies must be an array") }
            var parsed: [OutboundMessage.QuickReply] = []
            for reply in array {
                guard reply.object != nil, let title = try string("title", in: reply), let payload = try string("payload", in: reply) else {
                    throw SendError.invalidQuickReply("each quick reply needs a title and a payload")
                }
                parsed.append(.init(title: title, payload: payload))
            }
            outbound.quickReplies = parsed
        }
        var split = false
        switch document["split"] {
        case nil, .null?: break
        case .bool(let flag)?: split = flag
        default: throw SendError.invalidInput("split must be true or false")
        }
        try outbound.validate(for: platform, splitting: split)

        var humanAgent = false
        switch document["humanAgent"] {
        case nil, .null?: break
        case .bool(let flag)?: humanAgent = flag
        default: throw SendError.invalidInput("humanAgent must be true or false")
        }
        var messagingType: MessagingType = .update
        switch try string("tag", in: document)?.uppercased() {
        case nil: break
        case "HUMAN_AGENT"?:
            guard humanAgent else {
                throw SendError.invalidInput("the HUMAN_AGENT tag is for a person's message: state it with \"humanAgent\": true")
            }
            messagingType = .humanAgent
        default: throw SendError.invalidInput("tag must be HUMAN_AGENT when given")
        }
        switch try string("messagingType", in: document)?.uppercased() {
        case nil: break
        case "RESPONSE"?: if messagingType != .humanAgent { messagingType = .response }
        case "UPDATE"?: if messagingType != .humanAgent { messagingType = .update }
        default: throw SendError.invalidInput("messagingType must be RESPONSE or UPDATE")
        }
        var request = Request(businessId: businessId, platform: platform, recipientId: recipientId, message: outbound, messagingType: messagingType)
        request.locationId = try string("locationId", in: document).flatMap { $0.isEmpty ? nil : $0 }
        request.accountId = try string("accountId", in: document).flatMap { $0.isEmpty ? nil : $0 }
        request.humanAgent = humanAgent
        request.split = split
        request.toComment = commentId != nil
        if request.toComment, request.split || humanAgent || outbound.template != nil {
            throw SendError.invalidInput("a private reply is one message: no split, humanAgent or template")
        }
        return request
    }

    /// Sends the message (in parts when `split` asks for it and the text is too long), and
    /// returns what Meta answered for each part, in order.
    public func send(_ request: Request, context: InvocationContext) async throws(SendError) -> [SentMessage] {
        var logger = context.logger
        logger[metadataKey: "businessId"] = "\(request.businessId)"
        logger[metadataKey: "platform"] = "\(request.platform.rawValue)"
        let credentials = try await connection(for: request)
        // A template Meta would refuse (paused, rejected, or not among the number's templates
        // once their list was read) is refused before the call.
        if let template = request.message.template, request.platform == .whatsapp, let waba = credentials.wabaId,
            let health = try? await directory.whatsAppHealth(waba), let refusal = health.refusal(of: template.name, language: template.language)
        {
            throw SendError.invalidTemplate(refusal)
        }
        let messagingType = request.toComment ? request.messagingType : try await window(for: request, credentials: credentials)
        var messages = [request.message]
        if request.split, let text = request.message.text, !OutboundMessage.fitsTextLimit(text, request.platform) {
            let parts = OutboundMessage.parts(of: text, for: request.platform)
            messages = parts.enumerated().map { index, part in
                // Quick replies go with the last part, where the customer answers.
                OutboundMessage(text: part, quickReplies: index == parts.count - 1 ? request.message.quickReplies : nil)
            }
        }
        var sent: [SentMessage] = []
        for message in messages {
            do {
                let one = try await sender.send(
                    message, platform: request.platform, recipientId: request.recipientId, credentials: credentials,
                    messagingType: messagingType, deadline: context.deadline - .milliseconds(200), continuing: !sent.isEmpty,
                    toComment: request.toComment, logger: logger)
                sent.append(one)
            } catch {
                await directory.record(error, of: credentials, logger: logger)
                guard !sent.isEmpty else { throw error }
                // Part of the text is out; what was sent is reported with the failure.
                throw SendError.partiallySent(
                    "\(sent.count) of \(messages.count) parts were sent (\(sent.map(\.messageId).joined(separator: ", "))); then \(error.errorType): \(error.errorMessage)",
                    sent: sent, cause: error.graph)
            }
            logger.info("message sent", metadata: ["messageId": "\(sent.last?.messageId ?? "")"])
            if let ledger, let id = sent.last?.messageId {
                do {
                    try await ledger.recordSent(id, answering: nil, businessId: request.businessId)
                } catch {
                    // The message is out: its id is only for statuses and echoes, not worth failing the call.
                    logger.warning("could not record the sent message's id", metadata: ["error": "\(error)"])
                }
            }
        }
        if let events = telemetry.events(for: context) {
            let tenant = Tenant(businessId: request.businessId, locationId: credentials.locationId ?? "")
            var event = ConversationEvent(
                .replySent, businessId: request.businessId, locationId: credentials.locationId, platform: request.platform,
                conversationId: ConversationEvent.conversationId(tenant, request.platform, request.recipientId),
                reason: request.humanAgent ? "send (a person)" : "send")
            event.sentMessageIds = sent.map(\.messageId)
            events.add(event)
            if request.humanAgent {
                events.add(
                    ConversationEvent(
                        .conversationPaused, businessId: request.businessId, locationId: credentials.locationId, platform: request.platform,
                        conversationId: event.conversationId, reason: "human"))
            }
        }
        if request.humanAgent, let conversations, let account = credentials.sendingAccount(for: request.platform) {
            // A person wrote: the agent steps back in this conversation.
            do {
                try await conversations.pause(
                    platform: request.platform, account: account, customer: request.recipientId, businessId: request.businessId,
                    seconds: credentials.settings.pauseSeconds(or: pauseSeconds), by: .human)
            } catch {
                logger.warning("the message went, but the agent could not be paused", metadata: ["error": "\(error)"])
            }
        }
        return sent
    }

    /// `{"recipientId", "messageId", "messageIds"}`: `messageId` is the first part's.
    public static func output(_ sent: [SentMessage]) -> JSON {
        .dictionary([
            "recipientId": .string(sent.first?.recipientId ?? ""), "messageId": .string(sent.first?.messageId ?? ""),
            "messageIds": .array(sent.map { .string($0.messageId) }),
        ])
    }

    /// How the message may go under the customer service window, or `OutsideWindow` before
    /// any call. A template (WhatsApp) may go at any time.
    func window(for request: Request, credentials: TenantCredentials) async throws(SendError) -> MessagingType {
        // A connection that cannot send at all says so first (InactiveCredentials, MissingAccount).
        guard let conversations, request.message.template == nil, credentials.isActive, credentials.token(for: request.platform) != nil,
            let account = credentials.sendingAccount(for: request.platform)
        else { return request.messagingType }
        let last: Int64?
        do {
            last = try await conversations.lastCustomerMessage(platform: request.platform, account: account, customer: request.recipientId)
        } catch {
            throw SendError.storeUnavailable("the conversation could not be read: \(error.code.rawValue)")
        }
        let now = conversations.clock.epochSeconds()
        switch Conversations.permission(lastCustomerMessage: last, now: now, platform: request.platform, humanAgent: request.humanAgent) {
        case .response: return .response
        case .humanAgent: return .humanAgent
        case .outside(let closedAt):
            let remedy =
                request.platform == .whatsapp
                ? "send an approved template (message.template)"
                : (request.humanAgent
                    ? "a person's reply may go up to 7 days after the customer's last message"
                    : "a person's reply may go with \"humanAgent\": true up to 7 days after the customer's last message")
            guard let closedAt else {
                throw SendError.outsideWindow(
                    "this customer has not written to this account within the window, so a free-form message cannot go: \(remedy)", closedAt: nil)
            }
            let closed = ISO8601.format(epochSeconds: closedAt)
            throw SendError.outsideWindow("the customer service window closed at \(closed): \(remedy)", closedAt: closed)
        }
    }

    /// The connection that sends: the named location's, the one owning the named account, or
    /// the business's only one. A business with several connections must name one.
    func connection(for request: Request) async throws(SendError) -> TenantCredentials {
        try await connection(businessId: request.businessId, locationId: request.locationId, accountId: request.accountId)
    }

    func connection(businessId: String, locationId: String?, accountId: String?) async throws(SendError) -> TenantCredentials {
        do {
            if let locationId {
                guard let credentials = try await directory.credentials(tenant: Tenant(businessId: businessId, locationId: locationId)) else {
                    throw SendError.unknownTenant("no Meta connection for business \(businessId) at location \(locationId)")
                }
                return credentials
            }
            if let accountId {
                guard let route = try await directory.route(identifier: accountId), route.tenant.businessId == businessId,
                    let credentials = try await directory.credentials(tenant: route.tenant)
                else {
                    throw SendError.unknownTenant("account \(accountId) is not connected to business \(businessId)")
                }
                return credentials
            }
            let connections = try await directory.connections(businessId: businessId)
            guard let only = connections.first else {
                throw SendError.unknownTenant("no Meta credentials for business \(businessId)")
            }
            guard connections.count == 1 else {
                throw SendError.ambiguousConnection("business \(businessId) has \(connections.count) connections: name locationId or accountId")
            }
            return only
        } catch let error as SendError {
            throw error
        } catch {
            throw SendError.storeUnavailable("the credentials could not be read: \(error)")
        }
    }

    // MARK: Pause and resume

    /// `POST /conversations/pause`, `/conversations/resume` and `/conversations/status` (or a
    /// direct invocation with `"action": "pause"|"resume"|"status"`): `{businessId,
    /// locationId?, accountId?, platform, customerId, minutes?}`. `status` changes nothing.
    public struct ControlRequest: Sendable, Equatable {
        public enum Action: String, Sendable { case pause, resume, status }
        public let action: Action
        public let businessId: String
        public var locationId: String?
        public var accountId: String?
        public let platform: Platform
        public let customerId: String
        /// How long to pause (1 minute to 7 days); nil: `HANDOFF_PAUSE_MINUTES`.
        public var minutes: Int64?
    }

    public static func parseControl(_ document: JSON, action: ControlRequest.Action) throws(SendError) -> ControlRequest {
        guard document.object != nil else { throw SendError.invalidInput("the input must be a JSON object") }
        func string(_ key: String) throws(SendError) -> String? {
            switch document[key] {
            case nil, .null?: return nil
            case .string(let value)?: return value.isEmpty ? nil : value
            default: throw SendError.invalidInput("\(key) must be a string")
            }
        }
        guard let businessId = try string("businessId"), !businessId.trimmingSpaces().isEmpty else {
            throw SendError.missingBusinessId("businessId is required")
        }
        guard let name = try string("platform"), let platform = Platform(rawValue: name) else {
            throw SendError.unknownPlatform("platform must be one of instagram, messenger, whatsapp")
        }
        guard let customerId = try string("customerId"), !customerId.trimmingSpaces().isEmpty, customerId.utf8.count <= 256 else {
            throw SendError.missingRecipient("customerId is required: the customer's IGSID, PSID or WhatsApp id")
        }
        var request = ControlRequest(action: action, businessId: businessId, platform: platform, customerId: customerId)
        request.locationId = try string("locationId")
        request.accountId = try string("accountId")
        switch document["minutes"] {
        case nil, .null?: break
        case let value?:
            guard action == .pause, let minutes = value.exactInt64, (1...Conversations.maxPauseSeconds / 60).contains(minutes) else {
                throw SendError.invalidInput("minutes must be a whole number from 1 to \(Conversations.maxPauseSeconds / 60) (7 days), for a pause")
            }
            request.minutes = minutes
        }
        return request
    }

    /// Pauses or resumes the agent in one conversation: `{"paused": true, "pausedUntil"}` or
    /// `{"paused": false, "wasPaused"}`; or says, changing nothing, whether it is paused (by
    /// whom, until when) and whether the customer's 24-hour window is open.
    public func control(_ request: ControlRequest, context: InvocationContext) async throws(SendError) -> JSON {
        guard let conversations else { throw SendError.storeUnavailable("conversations are not kept by this function") }
        let credentials = try await connection(businessId: request.businessId, locationId: request.locationId, accountId: request.accountId)
        guard let account = credentials.sendingAccount(for: request.platform) else {
            throw SendError.missingAccount("business \(request.businessId) has no \(request.platform.rawValue) account connected")
        }
        guard request.action != .status else { return try await status(of: request, account: account, in: conversations) }
        var logger = context.logger
        logger[metadataKey: "businessId"] = "\(request.businessId)"
        logger[metadataKey: "platform"] = "\(request.platform.rawValue)"
        if let events = telemetry.events(for: context) {
            let tenant = Tenant(businessId: request.businessId, locationId: credentials.locationId ?? "")
            events.add(
                ConversationEvent(
                    request.action == .pause ? .conversationPaused : .conversationResumed, businessId: request.businessId,
                    locationId: credentials.locationId, platform: request.platform,
                    conversationId: ConversationEvent.conversationId(tenant, request.platform, request.customerId), reason: "api"))
        }
        do {
            if request.action == .pause {
                let until = try await conversations.pause(
                    platform: request.platform, account: account, customer: request.customerId, businessId: request.businessId,
                    seconds: request.minutes.map { $0 * 60 } ?? credentials.settings.pauseSeconds(or: pauseSeconds), by: .api)
                logger.info("the agent was paused in a conversation", metadata: ["pausedUntil": "\(ISO8601.format(epochSeconds: until))"])
                return ["paused": true, "pausedUntil": .string(ISO8601.format(epochSeconds: until))]
            }
            let wasPaused = try await conversations.resume(platform: request.platform, account: account, customer: request.customerId)
            logger.info("the agent was resumed in a conversation", metadata: ["wasPaused": "\(wasPaused)"])
            return ["paused": false, "wasPaused": .bool(wasPaused)]
        } catch {
            throw SendError.storeUnavailable("the conversation could not be written: \(error.code.rawValue)")
        }
    }

    /// `{"paused", "pausedUntil"?, "pausedBy"?, "customerWroteAt"?, "windowOpen"}`: read only.
    private func status(of request: ControlRequest, account: String, in conversations: Conversations) async throws(SendError) -> JSON {
        let state: Conversations.State
        do {
            state = try await conversations.state(platform: request.platform, account: account, customer: request.customerId)
        } catch {
            throw SendError.storeUnavailable("the conversation could not be read: \(error.code.rawValue)")
        }
        let now = conversations.clock.epochSeconds()
        var answer: [String: JSON] = ["paused": .bool(state.isPaused(at: now))]
        if state.isPaused(at: now), let until = state.pausedUntil {
            answer["pausedUntil"] = .string(ISO8601.format(epochSeconds: until))
            answer["pausedBy"] = .string((state.pausedBy ?? .human).rawValue)
        }
        if let wrote = state.lastCustomerMessageAt { answer["customerWroteAt"] = .string(ISO8601.format(epochSeconds: wrote)) }
        let permission = Conversations.permission(lastCustomerMessage: state.lastCustomerMessageAt, now: now, platform: request.platform, humanAgent: false)
        answer["windowOpen"] = .bool(permission == .response)
        return JSON.dictionary(answer)
    }

    public static let pausePath = "/conversations/pause"
    public static let resumePath = "/conversations/resume"
    public static let statusPath = "/conversations/status"
    public static let conversationsPath = "/conversations"

    /// `GET /conversations?businessId=&paused=true`: the business's conversations paused now,
    /// with who paused each, until when, and how many of the customer's messages wait.
    public func pausedConversations(businessId: String?) async throws(SendError) -> JSON {
        guard let businessId, isValidIdentifier(businessId) else {
            throw SendError.invalidInput("businessId is required (letters, digits, '-', '_', '.', at most 128)")
        }
        guard let conversations else { throw SendError.storeUnavailable("conversations are not kept by this function") }
        let paused: [Conversations.PausedConversation]
        do {
            paused = try await conversations.paused(businessId: businessId)
        } catch {
            throw SendError.storeUnavailable("the paused conversations could not be read: \(error.code.rawValue)")
        }
        let list = (try? JSONNodeEncoder.node(paused)) ?? .array([])
        return ["businessId": .string(businessId), "paused": list]
    }

    /// Direct invocation: the output or a function error. Through API Gateway: a proxy
    /// response (400 invalid input, 404 unknown tenant, 409 inactive credentials, 502 Graph
    /// failure, 503 store unavailable).
    public var function: some FunctionHandler { Function(handler: self) }

    struct Function: FunctionHandler {
        let handler: SendHandler

        /// The event is read once: a document with API Gateway's fields is a proxy event (its
        /// body the input, errors answered by their status), anything else the input itself.
        func handle(event: [UInt8], context: InvocationContext) async throws -> [UInt8] {
            let document: JSON
            do {
                document = try JSON.parse(event)
            } catch {
                throw SendError.invalidInput("the input is not valid JSON (\(error.reason))")
            }
            let isGateway = document["requestContext"] != nil || document["httpMethod"] != nil || document["rawPath"] != nil
            guard isGateway else {
                switch document["action"] {
                case nil, .null?:
                    return SendHandler.output(try await handler.send(try SendHandler.parse(document), context: context)).encoded()
                case .string(let name)?:
                    guard let action = ControlRequest.Action(rawValue: name) else {
                        throw SendError.invalidInput("action must be pause, resume or status (or absent, to send)")
                    }
                    return try await handler.control(try SendHandler.parseControl(document, action: action), context: context).encoded()
                default:
                    throw SendError.invalidInput("action must be pause, resume or status (or absent, to send)")
                }
            }
            return try await HTTPFunction { request, context in
                if request.method == "GET", request.path == SendHandler.conversationsPath {
                    guard request.queryValue("paused") == "true" else { throw SendError.invalidInput("only paused=true is listed") }
                    let answer = try await handler.pausedConversations(businessId: request.queryValue("businessId"))
                    return HTTPResponse(status: 200, headers: ["Content-Type": "application/json"], body: String(decoding: answer.encoded(), as: UTF8.self))
                }
                let body: JSON
                do {
                    body = try JSON.parse(request.body)
                } catch {
                    throw SendError.invalidInput("the body is not valid JSON")
                }
                let answer: JSON
                switch request.path {
                case SendHandler.pausePath:
                    answer = try await handler.control(try SendHandler.parseControl(body, action: .pause), context: context)
                case SendHandler.resumePath:
                    answer = try await handler.control(try SendHandler.parseControl(body, action: .resume), context: context)
                case SendHandler.statusPath:
                    answer = try await handler.control(try SendHandler.parseControl(body, action: .status), context: context)
                default:
                    answer = SendHandler.output(try await handler.send(try SendHandler.parse(body), context: context))
                }
                return HTTPResponse(status: 200, headers: ["Content-Type": "application/json"], body: String(decoding: answer.encoded(), as: UTF8.self))
            }.handle(event: event, context: context)
        }
    }
}

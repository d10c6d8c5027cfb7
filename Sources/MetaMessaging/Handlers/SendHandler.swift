import FunctionRuntime
import KeyValueStore
import Logging

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
    }

    public let directory: TenantDirectory
    public let sender: MessageSender

    public init(directory: TenantDirectory, sender: MessageSender) {
        self.directory = directory
        self.sender = sender
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
        guard let recipientId = try string("recipientId", in: document), !recipientId.trimmingSpaces().isEmpty else {
            throw SendError.missingRecipient("recipientId is required")
        }
        guard let message = document["message"], message.object != nil else {
            throw SendError.emptyMessage("message must be an object with text or an attachment")
        }
        var outbound = OutboundMessage(text: try string("text", in: message))
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
        try outbound.validate(for: platform)

        var messagingType: MessagingType = .update
        switch try string("tag", in: document)?.uppercased() {
        case nil: break
        case "HUMAN_AGENT"?: messagingType = .humanAgent
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
        return request
    }

    public func send(_ request: Request, context: InvocationContext) async throws(SendError) -> SentMessage {
        var logger = context.logger
        logger[metadataKey: "businessId"] = "\(request.businessId)"
        logger[metadataKey: "platform"] = "\(request.platform.rawValue)"
        let credentials = try await connection(for: request)
        let sent = try await sender.send(
            request.message, platform: request.platform, recipientId: request.recipientId, credentials: credentials,
            messagingType: request.messagingType, deadline: context.deadline - .milliseconds(200), logger: logger)
        logger.info("message sent", metadata: ["messageId": "\(sent.messageId)"])
        return sent
    }

    /// The connection that sends: the named location's, the one owning the named account, or
    /// the business's only one. A business with several connections must name one.
    func connection(for request: Request) async throws(SendError) -> TenantCredentials {
        do {
            if let locationId = request.locationId {
                guard let credentials = try await directory.credentials(tenant: Tenant(businessId: request.businessId, locationId: locationId)) else {
                    throw SendError.unknownTenant("no Meta connection for business \(request.businessId) at location \(locationId)")
                }
                return credentials
            }
            if let accountId = request.accountId {
                guard let route = try await directory.route(identifier: accountId), route.tenant.businessId == request.businessId,
                    let credentials = try await directory.credentials(tenant: route.tenant)
                else {
                    throw SendError.unknownTenant("account \(accountId) is not connected to business \(request.businessId)")
                }
                return credentials
            }
            let connections = try await directory.connections(businessId: request.businessId)
            guard let only = connections.first else {
                throw SendError.unknownTenant("no Meta credentials for business \(request.businessId)")
            }
            guard connections.count == 1 else {
                throw SendError.ambiguousConnection(
                    "business \(request.businessId) has \(connections.count) connections: name locationId or accountId")
            }
            return only
        } catch let error as SendError {
            throw error
        } catch {
            throw SendError.storeUnavailable("the credentials could not be read: \(error)")
        }
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
                let sent = try await handler.send(try SendHandler.parse(document), context: context)
                return JSON.dictionary(["recipientId": .string(sent.recipientId), "messageId": .string(sent.messageId)]).encoded()
            }
            return try await HTTPFunction { request, context in
                let body: JSON
                do {
                    body = try JSON.parse(request.body)
                } catch {
                    throw SendError.invalidInput("the body is not valid JSON")
                }
                let sent = try await handler.send(try SendHandler.parse(body), context: context)
                return .json(200, ["recipientId": sent.recipientId, "messageId": sent.messageId])
            }.handle(event: event, context: context)
        }
    }
}

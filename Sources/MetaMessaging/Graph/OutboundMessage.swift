import FunctionRuntime

/// A message to send: text, or one attachment by URL, optionally with quick replies.
public struct OutboundMessage: Sendable, Codable, Equatable {
    public struct OutboundAttachment: Sendable, Codable, Equatable {
        public let type: String
        public let url: String

        public init(type: String, url: String) {
            self.type = type
            self.url = url
        }
    }

    public struct QuickReply: Sendable, Codable, Equatable {
        public let title: String
        public let payload: String

        public init(title: String, payload: String) {
            self.title = title
            self.payload = payload
        }
    }

    public var text: String?
    public var attachment: OutboundAttachment?
    public var quickReplies: [QuickReply]?

    public init(text: String? = nil, attachment: OutboundAttachment? = nil, quickReplies: [QuickReply]? = nil) {
        self.text = text
        self.attachment = attachment
        self.quickReplies = quickReplies
    }

    /// Limits Meta documents: Instagram text 1000 bytes of UTF-8, Messenger 2000 characters,
    /// WhatsApp 4096 characters; 13 quick replies (3 reply buttons on WhatsApp), titles of 20
    /// characters.
    public static func maxQuickReplies(_ platform: Platform) -> Int { platform == .whatsapp ? 3 : 13 }
    public static let maxQuickReplyTitle = 20
    public static let attachmentTypes: Set<String> = ["image", "video", "audio", "file"]

    static func fitsTextLimit(_ text: String, _ platform: Platform) -> Bool {
        switch platform {
        case .instagram: text.utf8.count <= 1000
        case .messenger: text.count <= 2000
        case .whatsapp: text.count <= 4096
        }
    }

    /// A reply composed by the agent, cut to fit the platform's limit (an agent is not told
    /// the limits; a cut reply beats no reply).
    public static func reply(_ text: String, for platform: Platform) -> OutboundMessage {
        guard !fitsTextLimit(text, platform) else { return OutboundMessage(text: text) }
        var cut = ""
        for character in text {
            let candidate = cut + String(character)
            guard fitsTextLimit(candidate + "…", platform) else { break }
            cut = candidate
        }
        return OutboundMessage(text: cut + "…")
    }

    /// Checks the message against the platform's rules before anything is sent.
    public func validate(for platform: Platform) throws(SendError) {
        let trimmed = text?.trimmingSpaces() ?? ""
        if let attachment {
            guard text == nil else {
                throw SendError.invalidMessage("a message carries either text or an attachment, not both")
            }
            guard Self.attachmentTypes.contains(attachment.type) else {
                throw SendError.invalidAttachment("attachment type must be one of image, video, audio, file")
            }
            guard attachment.url.hasPrefix("https://") || attachment.url.hasPrefix("http://") else {
                throw SendError.invalidAttachment("attachment url must be an http(s) URL")
            }
        } else {
            guard !trimmed.isEmpty else { throw SendError.emptyMessage("the message has no text and no attachment") }
            guard Self.fitsTextLimit(text ?? "", platform) else {
                let limit =
                    switch platform {
                    case .instagram: "1000 bytes of UTF-8"
                    case .messenger: "2000 characters"
                    case .whatsapp: "4096 characters"
                    }
                throw SendError.textTooLong("the text is longer than \(platform.rawValue)'s limit of \(limit)")
            }
        }
        if let quickReplies {
            guard quickReplies.count <= Self.maxQuickReplies(platform) else {
                throw SendError.tooManyQuickReplies("\(platform.rawValue) allows at most \(Self.maxQuickReplies(platform)) quick replies")
            }
            if platform == .whatsapp, attachment != nil {
                throw SendError.invalidQuickReply("WhatsApp reply buttons need a text message")
            }
            for reply in quickReplies {
                guard !reply.title.trimmingSpaces().isEmpty, reply.title.count <= Self.maxQuickReplyTitle else {
                    throw SendError.invalidQuickReply("each quick reply needs a title of 1 to \(Self.maxQuickReplyTitle) characters")
                }
                guard !reply.payload.isEmpty, reply.payload.count <= 1000 else {
                    throw SendError.invalidQuickReply("each quick reply needs a payload of 1 to 1000 characters")
                }
            }
        }
    }

    /// The Send API body for `platform` (Messenger Platform "Send API"; Instagram Messaging
    /// "Send a Message"; WhatsApp Cloud API "Messages").
    func graphBody(platform: Platform, recipientId: String, messagingType: MessagingType) -> JSON {
        switch platform {
        case .instagram, .messenger:
            var message: [String: JSON] = [:]
            if let text { message["text"] = .string(text) }
            if let attachment {
                message["attachment"] = ["type": .string(attachment.type), "payload": ["url": .string(attachment.url)]]
            }
            if let quickReplies, !quickReplies.isEmpty {
                message["quick_replies"] = .array(
                    quickReplies.map {
                        ["content_type": "text", "title": .string($0.title), "payload": .string($0.payload)]
                    })
            }
            var body: [String: JSON] = ["recipient": ["id": .string(recipientId)], "message": .dictionary(message)]
            switch messagingType {
            case .response: if platform == .messenger { body["messaging_type"] = "RESPONSE" }
            case .update: if platform == .messenger { body["messaging_type"] = "UPDATE" }
            case .humanAgent:
                body["messaging_type"] = "MESSAGE_TAG"
                body["tag"] = "HUMAN_AGENT"
            }
            return .dictionary(body)
        case .whatsapp:
            var body: [String: JSON] = [
                "messaging_product": "whatsapp", "recipient_type": "individual", "to": .string(recipientId),
            ]
            if let attachment {
                let type = attachment.type == "file" ? "document" : attachment.type
                body["type"] = .string(type)
                body[type] = ["link": .string(attachment.url)]
            } else if let quickReplies, !quickReplies.isEmpty {
                body["type"] = "interactive"
                body["interactive"] = [
                    "type": "button",
                    "body": ["text": .string(text ?? "")],
                    "action": [
                        "buttons": .array(
                            quickReplies.map {
                                ["type": "reply", "reply": ["id": .string($0.payload), "title": .string($0.title)]]
                            })
                    ],
                ]
            } else {
                body["type"] = "text"
                body["text"] = ["preview_url": false, "body": .string(text ?? "")]
            }
            return .dictionary(body)
        }
    }
}

/// Why a message is sent (Messenger's `messaging_type`).
public enum MessagingType: String, Sendable, Codable {
    /// A reply to a message the customer sent (within the 24-hour window).
    case response
    /// A message the business starts (within the 24-hour window).
    case update
    /// A human agent's reply, allowed up to 7 days (`tag: HUMAN_AGENT`).
    case humanAgent = "human_agent"
}

/// A failure of `send` (or of the reply step of `receive`): a Lambda function error with an
/// `errorType` a caller can act on, and through API Gateway a proxy response with its status
/// (400 invalid input, 404 unknown tenant, 409 credentials to reconnect, 502 Meta, 503 store).
/// The Graph error, if any, is kept whole.
public enum SendError: HTTPResponseError, Equatable {
    case invalidInput(String)
    case missingBusinessId(String)
    case unknownPlatform(String)
    case missingRecipient(String)
    case emptyMessage(String)
    case textTooLong(String)
    case tooManyQuickReplies(String)
    case invalidQuickReply(String)
    case invalidAttachment(String)
    case invalidMessage(String)
    case unknownTenant(String)
    /// The business has several connections and the request named none of them.
    case ambiguousConnection(String)
    case inactiveCredentials(String)
    case missingAccount(String)
    case storeUnavailable(String)
    case graphAPIError(GraphError)
    case tokenExpired(GraphError)
    case graphUnreachable(GraphError)
    case invalidGraphResponse(String)
    /// No time left before the invocation's deadline (the Graph call, if one was cut short).
    case deadlineExceeded(String, graph: GraphError?)

    public var errorType: String {
        switch self {
        case .invalidInput: "InvalidInput"
        case .missingBusinessId: "MissingBusinessId"
        case .unknownPlatform: "UnknownPlatform"
        case .missingRecipient: "MissingRecipient"
        case .emptyMessage: "EmptyMessage"
        case .textTooLong: "TextTooLong"
        case .tooManyQuickReplies: "TooManyQuickReplies"
        case .invalidQuickReply: "InvalidQuickReply"
        case .invalidAttachment: "InvalidAttachment"
        case .invalidMessage: "InvalidMessage"
        case .unknownTenant: "UnknownTenant"
        case .ambiguousConnection: "AmbiguousConnection"
        case .inactiveCredentials: "InactiveCredentials"
        case .missingAccount: "MissingAccount"
        case .storeUnavailable: "StoreUnavailable"
        case .graphAPIError: "GraphAPIError"
        case .tokenExpired: "TokenExpired"
        case .graphUnreachable: "GraphUnreachable"
        case .invalidGraphResponse: "InvalidGraphResponse"
        case .deadlineExceeded: "DeadlineExceeded"
        }
    }

    public var errorMessage: String {
        switch self {
        case .invalidInput(let text), .missingBusinessId(let text), .unknownPlatform(let text), .missingRecipient(let text),
            .emptyMessage(let text), .textTooLong(let text), .tooManyQuickReplies(let text), .invalidQuickReply(let text),
            .invalidAttachment(let text), .invalidMessage(let text), .unknownTenant(let text), .ambiguousConnection(let text),
            .inactiveCredentials(let text),
            .missingAccount(let text), .storeUnavailable(let text), .invalidGraphResponse(let text), .deadlineExceeded(let text, _):
            text
        case .graphAPIError(let error), .tokenExpired(let error), .graphUnreachable(let error):
            error.description
        }
    }

    public var status: Int {
        switch self {
        case .unknownTenant: 404
        case .inactiveCredentials, .missingAccount, .tokenExpired: 409
        case .storeUnavailable: 503
        case .graphAPIError, .graphUnreachable, .invalidGraphResponse, .deadlineExceeded: 502
        default: 400
        }
    }

    /// Meta's error, when Meta answered one (or a call to it failed).
    public var graph: GraphError? {
        switch self {
        case .graphAPIError(let error), .tokenExpired(let error), .graphUnreachable(let error): error
        case .deadlineExceeded(_, let graph): graph
        default: nil
        }
    }

    /// Whether the failure is the deadline's, not the message's.
    public var isOutOfTime: Bool {
        if case .deadlineExceeded = self { true } else { false }
    }
}

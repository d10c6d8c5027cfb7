/// The three messaging channels of one Meta app.
public enum Platform: String, Sendable, Codable, Equatable, CaseIterable {
    case instagram, messenger, whatsapp
}

/// An attachment as Meta describes it: a type and, where Meta gives one, a URL (Instagram
/// and Messenger) or a media id (WhatsApp).
public struct Attachment: Sendable, Codable, Equatable {
    public let type: String
    public let url: String?
    public let mediaId: String?

    public init(type: String, url: String? = nil, mediaId: String? = nil) {
        self.type = type
        self.url = url
        self.mediaId = mediaId
    }
}

/// What the customer sent, in the forms we answer.
public enum MessageContent: Sendable, Codable, Equatable {
    case text(String)
    case attachments([Attachment], caption: String?)
    /// A tapped quick reply (Instagram, Messenger) or reply button / list row (WhatsApp).
    case quickReply(text: String, payload: String)
    case postback(title: String, payload: String)
    /// A reply to the business's story (Instagram).
    case storyReply(text: String, storyURL: String?)

    /// The text handed to the agent.
    public var agentText: String {
        switch self {
        case .text(let text): return text
        case .attachments(let attachments, let caption):
            let described = attachments.map { attachment in
                "[\(attachment.type)\(attachment.url.map { ": \($0)" } ?? "")]"
            }.joined(separator: " ")
            return [caption, described].compactMap { $0 }.filter { !$0.isEmpty }.joined(separator: " ")
        case .quickReply(let text, _): return text
        case .postback(let title, _): return title
        case .storyReply(let text, _): return text
        }
    }
}

/// One inbound message that deserves an answer, parsed from a webhook.
public struct InboundMessage: Sendable, Codable, Equatable {
    public let platform: Platform
    /// `mid` (Instagram, Messenger, postbacks) or `wamid` (WhatsApp).
    public let messageId: String
    /// The identifier Meta routed the event by: Instagram account id, Page id, or WhatsApp
    /// phone number id.
    public let accountId: String
    /// IGSID, PSID or WhatsApp id: who gets the reply.
    public let senderId: String
    /// Milliseconds since 1970.
    public let timestamp: Int64
    public let content: MessageContent

    public init(platform: Platform, messageId: String, accountId: String, senderId: String, timestamp: Int64, content: MessageContent) {
        self.platform = platform
        self.messageId = messageId
        self.accountId = accountId
        self.senderId = senderId
        self.timestamp = timestamp
        self.content = content
    }
}

/// Why an event is deliberately not answered.
public enum SkipReason: String, Sendable, Equatable {
    case echo, reaction, read, delivery, status, deleted, unsupported, other
}

/// One event of a delivery, typed at the edge.
public enum WebhookEvent: Sendable, Equatable {
    case message(InboundMessage)
    case skipped(SkipReason, accountId: String, timestamp: Int64)
    /// An event we could not read; reported, never answered, never stops the others.
    case invalid(String)

    public var timestamp: Int64 {
        switch self {
        case .message(let message): message.timestamp
        case .skipped(_, _, let timestamp): timestamp
        case .invalid: 0
        }
    }
}

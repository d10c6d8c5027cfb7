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
public enum MessageContent: Sendable, Equatable {
    case text(String)
    case attachments([Attachment], caption: String?)
    /// A tapped quick reply (Instagram, Messenger) or reply button / list row (WhatsApp).
    case quickReply(text: String, payload: String)
    case postback(title: String, payload: String)
    /// A reply to the business's story (Instagram).
    case storyReply(text: String, storyURL: String?)
    /// A comment on the business's post, reel or live (Instagram `comments` and
    /// `live_comments`; a Facebook Page's `feed`): answered by a private reply addressed by the
    /// comment's id (and, where the location allows, a public one under it).
    case comment(Comment)

    public var isComment: Bool {
        if case .comment = self { true } else { false }
    }

    public var comment: Comment? {
        if case .comment(let comment) = self { comment } else { nil }
    }

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
        case .comment(let comment): return comment.text
        }
    }
}

/// What the agent is told of a comment (`"kind": "comment"`).
public struct Comment: Sendable, Equatable, Codable {
    /// The comment's id: what the private reply is addressed to, and its ledger record.
    public var id: String
    public var text: String
    /// The post, reel or live it is under: Instagram's media id, or a Facebook post id.
    public var mediaId: String?
    /// Instagram's `media_product_type` (`FEED`, `REELS`, `STORY`, `AD`), `live` for a live
    /// comment, `post` on Facebook.
    public var mediaType: String?
    /// The comment it answers, in a thread.
    public var parentId: String?
    /// The commenter's username (Instagram) or name (Facebook).
    public var username: String?

    public init(id: String, text: String, mediaId: String? = nil, mediaType: String? = nil, parentId: String? = nil, username: String? = nil) {
        self.id = id
        self.text = text
        self.mediaId = mediaId
        self.mediaType = mediaType
        self.parentId = parentId
        self.username = username
    }
}

/// `{"kind": "text", "text": ...}`, `{"kind": "attachments", "attachments": [...], "caption": ...}`,
/// `{"kind": "quick_reply", "text", "payload"}`, `{"kind": "postback", "title", "payload"}`,
/// `{"kind": "story_reply", "text", "storyUrl"}`: the form queued for `process`.
extension MessageContent: Codable {
    private enum CodingKeys: String, CodingKey { case kind, text, attachments, caption, payload, title, storyUrl, comment }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        switch try container.decode(String.self, forKey: .kind) {
        case "text": self = .text(try container.decode(String.self, forKey: .text))
        case "attachments":
            self = .attachments(
                try container.decode([Attachment].self, forKey: .attachments),
                caption: try container.decodeIfPresent(String.self, forKey: .caption))
        case "quick_reply":
            self = .quickReply(text: try container.decode(String.self, forKey: .text), payload: try container.decode(String.self, forKey: .payload))
        case "postback":
            self = .postback(title: try container.decode(String.self, forKey: .title), payload: try container.decode(String.self, forKey: .payload))
        case "story_reply":
            self = .storyReply(text: try container.decode(String.self, forKey: .text), storyURL: try container.decodeIfPresent(String.self, forKey: .storyUrl))
        case "comment": self = .comment(try container.decode(Comment.self, forKey: .comment))
        case let other:
            throw DecodingError.dataCorruptedError(forKey: .kind, in: container, debugDescription: "unknown content kind \(other)")
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        switch self {
        case .text(let text):
            try container.encode("text", forKey: .kind)
            try container.encode(text, forKey: .text)
        case .attachments(let attachments, let caption):
            try container.encode("attachments", forKey: .kind)
            try container.encode(attachments, forKey: .attachments)
            try container.encodeIfPresent(caption, forKey: .caption)
        case .quickReply(let text, let payload):
            try container.encode("quick_reply", forKey: .kind)
            try container.encode(text, forKey: .text)
            try container.encode(payload, forKey: .payload)
        case .postback(let title, let payload):
            try container.encode("postback", forKey: .kind)
            try container.encode(title, forKey: .title)
            try container.encode(payload, forKey: .payload)
        case .storyReply(let text, let storyURL):
            try container.encode("story_reply", forKey: .kind)
            try container.encode(text, forKey: .text)
            try container.encodeIfPresent(storyURL, forKey: .storyUrl)
        case .comment(let comment):
            try container.encode("comment", forKey: .kind)
            try container.encode(comment, forKey: .comment)
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
    /// The customer's name when the webhook carries it (WhatsApp's `contacts[].profile.name`).
    public var senderName: String? = nil

    public init(
        platform: Platform, messageId: String, accountId: String, senderId: String, timestamp: Int64, content: MessageContent,
        senderName: String? = nil
    ) {
        self.platform = platform
        self.messageId = messageId
        self.accountId = accountId
        self.senderId = senderId
        self.timestamp = timestamp
        self.content = content
        self.senderName = senderName
    }

    /// The attachments the customer sent.
    public var attachments: [Attachment] {
        if case .attachments(let list, _) = content { list } else { [] }
    }
}

/// A message the business's account sent, as Meta echoes it back (Messenger
/// `message_echoes`, Instagram `message` with `is_echo`): ours, or a person's answer from
/// Meta's apps or another tool.
public struct Echo: Sendable, Equatable {
    public let platform: Platform
    /// The Page or Instagram account id the entry came for.
    public let accountId: String
    /// The customer the message went to (`recipient.id`).
    public let customerId: String
    /// The sent message's `mid`.
    public let messageId: String
    /// The app that sent it (Messenger gives `app_id`; absent when a person wrote from Meta's apps).
    public let appId: String?
    public let timestamp: Int64
    /// What the person wrote (kept during a pause only where the location allows text).
    public var text: String? = nil

    public init(platform: Platform, accountId: String, customerId: String, messageId: String, appId: String?, timestamp: Int64) {
        self.platform = platform
        self.accountId = accountId
        self.customerId = customerId
        self.messageId = messageId
        self.appId = appId
        self.timestamp = timestamp
    }
}

/// Why an event is deliberately not answered.
public enum SkipReason: String, Sendable, Equatable {
    case echo, reaction, read, delivery, status, deleted, unsupported, other
    /// A comment of the business's own account or Page (our public replies among them).
    case ownComment = "own_comment"
    /// A comment edited, hidden or removed: acknowledged, not answered.
    case commentChange = "comment_change"
    /// A comment older than Meta lets a private reply answer (7 days).
    case commentTooOld = "comment_too_old"
}

/// What WhatsApp says became of a message we sent (`value.statuses[]` of a `messages` change).
public struct DeliveryStatus: Sendable, Equatable {
    /// The phone number id the message was sent from.
    public let accountId: String
    /// The id the Send API gave the message (`wamid...`).
    public let messageId: String
    /// `sent`, `delivered`, `read` or `failed` (others are kept as Meta names them).
    public let status: String
    public let recipientId: String?
    /// Milliseconds since 1970.
    public let timestamp: Int64
    /// For `failed`: Meta's error code and title (`errors[0]`).
    public let errorCode: Int?
    public let errorTitle: String?

    public init(
        accountId: String, messageId: String, status: String, recipientId: String?, timestamp: Int64, errorCode: Int? = nil, errorTitle: String? = nil
    ) {
        self.accountId = accountId
        self.messageId = messageId
        self.status = status
        self.recipientId = recipientId
        self.timestamp = timestamp
        self.errorCode = errorCode
        self.errorTitle = errorTitle
    }
}

/// The handover protocol (Messenger Platform "messaging_handovers"): another app of the Page
/// took the conversation (`take_thread_control`, such as Meta's Page Inbox when a person
/// answers there), or one passed it to an app (`pass_thread_control`).
public struct ThreadControl: Sendable, Equatable {
    public let platform: Platform
    /// The Page or Instagram account (`recipient.id`).
    public let accountId: String
    /// The customer (`sender.id`).
    public let customerId: String
    /// The app that has the conversation now (nil: idle, nobody's).
    public let newOwnerAppId: String?
    public let previousOwnerAppId: String?
    public let timestamp: Int64

    public init(platform: Platform, accountId: String, customerId: String, newOwnerAppId: String?, previousOwnerAppId: String?, timestamp: Int64) {
        self.platform = platform
        self.accountId = accountId
        self.customerId = customerId
        self.newOwnerAppId = newOwnerAppId
        self.previousOwnerAppId = previousOwnerAppId
        self.timestamp = timestamp
    }
}

/// One event of a delivery, typed at the edge.
public enum WebhookEvent: Sendable, Equatable {
    /// The conversation changed hands between the Page's apps (handover protocol).
    case threadControl(ThreadControl)
    /// A WhatsApp Business Account's health: quality, the account, a template's status.
    case whatsappHealth(WhatsAppHealthEvent)
    case message(InboundMessage)
    /// A delivery status of a message we sent (WhatsApp).
    case delivery(DeliveryStatus)
    /// A message the business's account sent (ours or a person's).
    case echo(Echo)
    /// An event never answered; `customerId` when the event names the customer (the
    /// conversation's log records are partitioned by it).
    case skipped(SkipReason, accountId: String, customerId: String? = nil, timestamp: Int64)
    /// An event we could not read; reported, never answered, never stops the others.
    case invalid(String)

    public var timestamp: Int64 {
        switch self {
        case .message(let message): message.timestamp
        case .delivery(let status): status.timestamp
        case .echo(let echo): echo.timestamp
        case .threadControl(let control): control.timestamp
        case .whatsappHealth(let health): health.timestamp
        case .skipped(_, _, _, let timestamp): timestamp
        case .invalid: 0
        }
    }
}

/// A WhatsApp Business Account's health as Meta's webhooks tell it (`phone_number_quality_update`,
/// `account_update`, `message_template_status_update`).
public struct WhatsAppHealthEvent: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        /// A number's quality or messaging limit changed (`event`: `FLAGGED`, `UNFLAGGED`,
        /// `DOWNGRADE`, `UPGRADE`, ...; the limit: `TIER_250`, `TIER_1K`, ...).
        case quality(displayPhoneNumber: String?, event: String, limit: String?, oldLimit: String?)
        /// The account was verified, restricted, banned, ... (`event`).
        case account(event: String, phoneNumber: String?)
        /// A template was approved, rejected, paused, disabled, ...
        case template(name: String, language: String, status: String, reason: String?, category: String?)
    }

    public let wabaId: String
    public let kind: Kind
    /// Milliseconds since 1970 (the entry's time).
    public let timestamp: Int64

    public init(wabaId: String, kind: Kind, timestamp: Int64) {
        self.wabaId = wabaId
        self.kind = kind
        self.timestamp = timestamp
    }

    /// A drop in quality, worth a person's attention (a metric and an alarm).
    public var isQualityDrop: Bool {
        if case .quality(_, let event, _, _) = kind { return ["FLAGGED", "DOWNGRADE"].contains(event) }
        return false
    }
}

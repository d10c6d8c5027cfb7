import MetaWebhooks

/// A message to send: text, or one attachment by URL, optionally with quick replies; or, on
/// WhatsApp, an approved template.
public struct OutboundMessage: Sendable, Equatable {
    /// A WhatsApp message template (Cloud API "Send message templates"): its name, its
    /// language code, and the parameters of its header, body and buttons as Meta documents
    /// them (`{"type": "body", "parameters": [{"type": "text", "text": "..."}]}`).
    public struct Template: Sendable, Equatable {
        public let name: String
        public let language: String
        public let components: [JSON]

        public init(name: String, language: String, components: [JSON] = []) {
            self.name = name
            self.language = language
            self.components = components
        }
    }

    public struct OutboundAttachment: Sendable, Equatable {
        public let type: String
        public let url: String

        public init(type: String, url: String) {
            self.type = type
            self.url = url
        }
    }

    public struct QuickReply: Sendable, Equatable {
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
    public var template: Template?

    public init(text: String? = nil, attachment: OutboundAttachment? = nil, quickReplies: [QuickReply]? = nil, template: Template? = nil) {
        self.text = text
        self.attachment = attachment
        self.quickReplies = quickReplies
        self.template = template
    }

    /// The component and parameter types WhatsApp's template messages take.
    static let templateComponentTypes: Set<String> = ["header", "body", "button"]
    static let templateParameterTypes: Set<String> = [
        "text", "currency", "date_time", "image", "document", "video", "location", "payload", "coupon_code", "action",
    ]
    static let templateButtonSubTypes: Set<String> = ["quick_reply", "url", "copy_code", "flow", "catalog", "mpm", "voice_call"]

    /// A template's shape, checked before any call (Meta checks it against the approved
    /// template itself and answers 132000 and the like when the parameters do not fit).
    func validateTemplate(_ template: Template, for platform: Platform) throws(SendError) {
        guard platform == .whatsapp else {
            throw SendError.invalidTemplate("templates are sent on WhatsApp only; Messenger and Instagram take free-form messages in the window")
        }
        guard text == nil, attachment == nil, quickReplies == nil else {
            throw SendError.invalidTemplate("a template message carries no text, attachment or quick replies of its own")
        }
        guard (1...512).contains(template.name.utf8.count),
            template.name.utf8.allSatisfy({ (0x61...0x7A).contains($0) || (0x30...0x39).contains($0) || $0 == 0x5F })
        else {
            throw SendError.invalidTemplate("template.name must be the template's name: 1 to 512 of a-z, 0-9 and _")
        }
        guard (2...15).contains(template.language.utf8.count),
            template.language.utf8.allSatisfy({ (0x61...0x7A).contains($0) || (0x41...0x5A).contains($0) || $0 == 0x5F })
        else {
            throw SendError.invalidTemplate("template.language must be a language code such as en_US or ro")
        }
        guard template.components.count <= 10 else { throw SendError.invalidTemplate("a template has at most 10 components") }
        for component in template.components {
            guard let type = component["type"]?.string, Self.templateComponentTypes.contains(type) else {
                throw SendError.invalidTemplate("each template component needs a type: header, body or button")
            }
            if type == "button" {
                guard let subType = component["sub_type"]?.string, Self.templateButtonSubTypes.contains(subType) else {
                    throw SendError.invalidTemplate("a button component needs a sub_type such as quick_reply or url")
                }
                let index = component["index"]?.int64 ?? component["index"]?.string.flatMap { Int64($0) }
                guard let index, (0...9).contains(index) else {
                    throw SendError.invalidTemplate("a button component needs an index from 0 to 9")
                }
            }
            guard let parameters = component["parameters"]?.array ?? (component["parameters"] == nil ? [] : nil), parameters.count <= 100 else {
                throw SendError.invalidTemplate("a component's parameters must be an array")
            }
            for parameter in parameters {
                guard let kind = parameter["type"]?.string, Self.templateParameterTypes.contains(kind) else {
                    throw SendError.invalidTemplate("each parameter needs a type: text, currency, date_time, image, document, video, location or payload")
                }
                if kind == "text" {
                    guard let text = parameter["text"]?.string, !text.trimmingSpaces().isEmpty, text.count <= 32_768 else {
                        throw SendError.invalidTemplate("a text parameter needs a non-empty text")
                    }
                }
            }
        }
    }

    /// Limits Meta documents: Instagram text 1000 bytes of UTF-8, Messenger 2000 characters,
    /// WhatsApp 4096 characters; 13 quick replies (3 reply buttons on WhatsApp), titles of 20
    /// characters.
    public static func maxQuickReplies(_ platform: Platform) -> Int { platform == .whatsapp ? 3 : 13 }
    public static let maxQuickReplyTitle = 20
    public static let attachmentTypes: Set<String> = ["image", "video", "audio", "file"]

    package static func fitsTextLimit(_ text: String, _ platform: Platform) -> Bool {
        switch platform {
        case .instagram: text.utf8.count <= 1000
        case .messenger: text.count <= 2000
        case .whatsapp: text.count <= 4096
        }
    }

    /// The most messages one reply becomes.
    public static let maxParts = 5
    /// Ends the last part when a reply needs more than `maxParts` messages.
    public static let cutNotice = " […] (the rest of this reply was cut)"

    /// A text longer than the platform's limit, as the messages that carry it in order: cut at
    /// a paragraph break, else at the end of a sentence, else between words, else between
    /// characters, each part within the limit (`breakPoint` says where). Beyond `maxParts`,
    /// the last part ends with `cutNotice`.
    public static func parts(of text: String, for platform: Platform, maxParts: Int = maxParts) -> [String] {
        var parts: [String] = []
        var rest = Substring(text).trimmingWhitespace()
        while !rest.isEmpty {
            if fitsTextLimit(String(rest), platform) {
                parts.append(String(rest))
                break
            }
            if parts.count == max(maxParts, 1) - 1 {
                let room = prefixFitting(rest, platform, reserving: cutNotice)
                let cut = rest[..<breakPoint(in: rest[..<room])].trimmingWhitespace()
                parts.append(String(cut) + cutNotice)
                break
            }
            let fitting = rest[..<prefixFitting(rest, platform, reserving: "")]
            guard !fitting.isEmpty else {
                // One character longer than the limit (a cluster of combining marks): cut
                // between its Unicode scalars.
                let scalars = rest.unicodeScalars.prefix(platform == .instagram ? 250 : 1000)
                parts.append(String(String.UnicodeScalarView(scalars)))
                rest = Substring(String(String.UnicodeScalarView(rest.unicodeScalars.dropFirst(scalars.count)))).trimmingWhitespace()
                continue
            }
            let end = breakPoint(in: fitting)
            parts.append(String(rest[..<end].trimmingWhitespace()))
            rest = rest[end...].trimmingWhitespace()
        }
        return parts.filter { !$0.isEmpty }
    }

    /// The end of the longest prefix of `text` that fits, with `suffix` after it.
    static func prefixFitting(_ text: Substring, _ platform: Platform, reserving suffix: String) -> String.Index {
        var bytes = suffix.utf8.count
        var characters = suffix.count
        var end = text.startIndex
        for index in text.indices {
            let character = text[index]
            bytes += character.utf8.count
            characters += 1
            let fits =
                switch platform {
                case .instagram: bytes <= 1000
                case .messenger: characters <= 2000
                case .whatsapp: characters <= 4096
                }
            guard fits else { break }
            end = text.index(after: index)
        }
        return end
    }

    /// Where to cut `fitting` (a prefix of the text): after its last paragraph break in its
    /// last third, else its last sentence end or space in its second half, else at its end.
    /// (Parts stay long, so a reply of a few thousand characters fits in five messages.)
    static func breakPoint(in fitting: Substring) -> String.Index {
        let characters = Array(fitting.indices)
        func last(after fraction: (Int, Int), where isBreak: (Int) -> Bool) -> String.Index? {
            let floor = characters.count * fraction.0 / fraction.1
            var position = characters.count - 1
            while position > 0, position > floor {
                if isBreak(position) { return characters[position] }
                position -= 1
            }
            return nil
        }
        // After "\n\n" (a paragraph), after ". " / "! " / "? " / "…" / "\n" (a sentence), at a space.
        if let end = last(after: (2, 3), where: { fitting[characters[$0 - 1]] == "\n" && fitting[characters[$0]] == "\n" }) {
            return fitting.index(after: end)
        }
        if let end = last(
            after: (1, 2),
            where: { position in
                let previous = fitting[characters[position - 1]]
                let current = fitting[characters[position]]
                return (current == " " || current == "\n") && [".", "!", "?", "…", "\n"].contains(previous)
            })
        {
            return end
        }
        if let end = last(after: (1, 2), where: { fitting[characters[$0]].isWhitespace }) { return end }
        return fitting.endIndex
    }

    /// Checks the message against the platform's rules before anything is sent.
    /// With `splitting`, a text longer than the limit is accepted when it fits in `maxParts`
    /// messages.
    public func validate(for platform: Platform, splitting: Bool = false) throws(SendError) {
        if let template {
            try validateTemplate(template, for: platform)
            return
        }
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
            if splitting, let text, !Self.fitsTextLimit(text, platform) {
                guard attachment == nil, Self.parts(of: text, for: platform, maxParts: Self.maxParts + 1).count <= Self.maxParts else {
                    throw SendError.textTooLong("the text does not fit in \(Self.maxParts) \(platform.rawValue) messages even split")
                }
            } else if !Self.fitsTextLimit(text ?? "", platform) {
                let limit =
                    switch platform {
                    case .instagram: "1000 bytes of UTF-8"
                    case .messenger: "2000 characters"
                    case .whatsapp: "4096 characters"
                    }
                throw SendError.textTooLong("the text is longer than \(platform.rawValue)'s limit of \(limit) (\"split\": true sends it as several messages)")
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
    func graphBody(platform: Platform, recipientId: String, messagingType: MessagingType, toComment: Bool = false) -> JSON {
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
            // A private reply is addressed by the comment's id, and goes outside any window.
            if toComment { return .dictionary(["recipient": ["comment_id": .string(recipientId)], "message": .dictionary(message)]) }
            var body: [String: JSON] = ["recipient": ["id": .string(recipientId)], "message": .dictionary(message)]
            switch messagingType {
            case .response: body["messaging_type"] = "RESPONSE"
            case .update: body["messaging_type"] = "UPDATE"
            case .humanAgent:
                body["messaging_type"] = "MESSAGE_TAG"
                body["tag"] = "HUMAN_AGENT"
            }
            return .dictionary(body)
        case .whatsapp:
            var body: [String: JSON] = [
                "messaging_product": "whatsapp", "recipient_type": "individual", "to": .string(recipientId),
            ]
            if let template {
                body["type"] = "template"
                var object: [String: JSON] = ["name": .string(template.name), "language": ["code": .string(template.language)]]
                if !template.components.isEmpty { object["components"] = .array(template.components) }
                body["template"] = .dictionary(object)
            } else if let attachment {
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
/// The Graph error, if any, is kept whole. The send route's HTTP contract (`HTTPResponseError`)
/// is the core's, declared beside the route (`SendHandler`); this module knows no runtime.
public enum SendError: Error, Sendable, Equatable {
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
    /// A free-form message outside the customer service window (refused before any call, or
    /// by Meta: WhatsApp 131047, Messenger 10/2018278).
    case outsideWindow(String, closedAt: String?)
    /// `message.template` is not one WhatsApp would take (checked before any call).
    case invalidTemplate(String)
    /// Meta refused the template: 132001 not found (in that language), 132000/132012 wrong
    /// parameters, 132015/132016 paused or disabled, other 132xxx.
    case templateNotFound(GraphError)
    case templateParameterMismatch(GraphError)
    case templateUnavailable(GraphError)
    case templateRejected(GraphError)
    /// A split text failed after some of its parts went (their ids in the message).
    case partiallySent(String, sent: [SentMessage], cause: GraphError?)
    /// Meta throttles the sending account (or nearly): nothing was sent; try again after
    /// `retryAfterSeconds` (Meta's estimate, or a minute).
    case throttled(String, retryAfterSeconds: Int, graph: GraphError?)
    /// A private reply Meta refused for the comment itself: it has one already (10900), it is
    /// past the 7 days or not to be answered (10903), or it is gone (100, subcode 33). Final.
    case commentAlreadyAnswered(GraphError)
    case commentNotAnswerable(GraphError)
    case commentGone(GraphError)

    /// The Graph error of a failure worth trying again (a transient Graph answer or a
    /// connection that failed), nil for anything else.
    public var transientGraphError: GraphError? {
        switch self {
        case .graphAPIError(let error) where error.isTransient, .graphUnreachable(let error) where error.isTransient: error
        default: nil
        }
    }

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
        case .outsideWindow: "OutsideWindow"
        case .invalidTemplate: "InvalidTemplate"
        case .templateNotFound: "TemplateNotFound"
        case .templateParameterMismatch: "TemplateParameterMismatch"
        case .templateUnavailable: "TemplateUnavailable"
        case .templateRejected: "TemplateRejected"
        case .partiallySent: "PartiallySent"
        case .throttled: "Throttled"
        case .commentAlreadyAnswered: "CommentAlreadyAnswered"
        case .commentNotAnswerable: "CommentNotAnswerable"
        case .commentGone: "CommentGone"
        }
    }

    public var errorMessage: String {
        switch self {
        case .invalidInput(let text), .missingBusinessId(let text), .unknownPlatform(let text), .missingRecipient(let text),
            .emptyMessage(let text), .textTooLong(let text), .tooManyQuickReplies(let text), .invalidQuickReply(let text),
            .invalidAttachment(let text), .invalidMessage(let text), .unknownTenant(let text), .ambiguousConnection(let text),
            .inactiveCredentials(let text),
            .missingAccount(let text), .storeUnavailable(let text), .invalidGraphResponse(let text), .deadlineExceeded(let text, _),
            .outsideWindow(let text, _), .invalidTemplate(let text), .partiallySent(let text, _, _), .throttled(let text, _, _):
            text
        case .graphAPIError(let error), .tokenExpired(let error), .graphUnreachable(let error), .templateNotFound(let error),
            .templateParameterMismatch(let error), .templateUnavailable(let error), .templateRejected(let error),
            .commentAlreadyAnswered(let error), .commentNotAnswerable(let error), .commentGone(let error):
            error.description
        }
    }

    public var status: Int {
        switch self {
        case .unknownTenant: 404
        case .inactiveCredentials, .missingAccount, .tokenExpired: 409
        case .outsideWindow, .templateNotFound, .templateParameterMismatch, .templateUnavailable, .templateRejected, .commentNotAnswerable: 422
        case .commentAlreadyAnswered: 409
        case .commentGone: 404
        case .storeUnavailable: 503
        case .throttled: 429
        case .graphAPIError, .graphUnreachable, .invalidGraphResponse, .deadlineExceeded, .partiallySent: 502
        default: 400
        }
    }

    /// Meta's error, when Meta answered one (or a call to it failed).
    public var graph: GraphError? {
        switch self {
        case .graphAPIError(let error), .tokenExpired(let error), .graphUnreachable(let error), .templateNotFound(let error),
            .templateParameterMismatch(let error), .templateUnavailable(let error), .templateRejected(let error),
            .commentAlreadyAnswered(let error), .commentNotAnswerable(let error), .commentGone(let error):
            error
        case .deadlineExceeded(_, let graph), .partiallySent(_, _, let graph), .throttled(_, _, let graph): graph
        default: nil
        }
    }

    /// Whether the failure is the deadline's, not the message's.
    public var isOutOfTime: Bool {
        if case .deadlineExceeded = self { true } else { false }
    }

    /// Seconds to wait when Meta throttles the account; nil for any other failure.
    public var retryAfterSeconds: Int? {
        if case .throttled(_, let seconds, _) = self { seconds } else { nil }
    }
}

extension Substring {
    /// Without the whitespace and newlines at either end.
    func trimmingWhitespace() -> Substring {
        guard let first = firstIndex(where: { !$0.isWhitespace }), let last = lastIndex(where: { !$0.isWhitespace }) else { return self[endIndex...] }
        return self[first...last]
    }
}

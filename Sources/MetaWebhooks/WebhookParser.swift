/// Reads a webhook body into typed events. Payload shapes: Meta for Developers, Messenger
/// Platform "Webhook Events Reference" (`messages`, `messaging_postbacks`, `message_reactions`,
/// `message_reads`, `message_deliveries`, `message_echoes`), Instagram Messaging webhooks, and
/// WhatsApp Cloud API "Webhooks: messages" (`value.messages`, `value.statuses`, `value.metadata`).
public enum WebhookParser {
    public struct Failure: Error, Sendable, Equatable {
        public let message: String
    }

    public struct Delivery: Sendable, Equatable {
        public let object: String
        public let events: [WebhookEvent]
    }

    public static func parse(_ body: [UInt8]) throws(Failure) -> Delivery {
        let document: JSON
        do {
            document = try JSON.parse(body)
        } catch {
            throw Failure(message: "the body is not valid JSON")
        }
        guard let object = document["object"]?.string else {
            throw Failure(message: "the body has no \"object\" field")
        }
        guard let entries = document["entry"]?.array else {
            throw Failure(message: "the body has no \"entry\" array")
        }
        var events: [WebhookEvent] = []
        switch object {
        case "instagram", "page":
            let platform: Platform = object == "instagram" ? .instagram : .messenger
            for entry in entries {
                guard let accountId = entry["id"]?.id else {
                    events.append(.invalid("an entry has no id"))
                    continue
                }
                // Milliseconds for messaging; changes (comments) give seconds.
                let entryTime = entry["time"]?.epochMilliseconds.map { $0 < 100_000_000_000 ? $0 * 1000 : $0 } ?? 0
                for item in entry["messaging"]?.array ?? [] {
                    events.append(messagingEvent(item, platform: platform, accountId: accountId, entryTime: entryTime))
                }
                // Comments come as changes (`comments`, `live_comments`, a Page's `feed`); so do
                // the App Dashboard's test events and fields we do not answer.
                var changes = entry["changes"]?.array ?? []
                if let field = entry["field"], let value = entry["value"] { changes.append(["field": field, "value": value]) }
                for change in changes {
                    events.append(commentChange(change, platform: platform, accountId: accountId, entryTime: entryTime))
                }
            }
        case "whatsapp_business_account":
            for entry in entries {
                for change in entry["changes"]?.array ?? [] {
                    if let health = whatsAppHealth(change, wabaId: entry["id"]?.id, time: entry["time"]) {
                        events.append(health)
                    } else {
                        events += whatsAppChange(change)
                    }
                }
            }
        default:
            throw Failure(message: "unsupported object \"\(object.prefix(40))\"")
        }
        return Delivery(object: object, events: events)
    }

    // MARK: Instagram and Messenger

    static func messagingEvent(_ event: JSON, platform: Platform, accountId: String, entryTime: Int64) -> WebhookEvent {
        guard let senderId = event["sender"]?["id"]?.id else { return .invalid("a messaging event has no sender id") }
        let timestamp: Int64
        if let value = event["timestamp"] {
            guard let millis = value.epochMilliseconds else { return .invalid("an event's timestamp is not a time") }
            timestamp = millis
        } else {
            timestamp = entryTime
        }
        if event["reaction"] != nil { return .skipped(.reaction, accountId: accountId, customerId: senderId, timestamp: timestamp) }
        if event["read"] != nil { return .skipped(.read, accountId: accountId, customerId: senderId, timestamp: timestamp) }
        if event["delivery"] != nil { return .skipped(.delivery, accountId: accountId, customerId: senderId, timestamp: timestamp) }
        if let control = event["take_thread_control"] ?? event["pass_thread_control"] {
            guard senderId != accountId else { return .skipped(.other, accountId: accountId, timestamp: timestamp) }
            return .threadControl(
                ThreadControl(
                    platform: platform, accountId: accountId, customerId: senderId, newOwnerAppId: control["new_owner_app_id"]?.id,
                    previousOwnerAppId: control["previous_owner_app_id"]?.id, timestamp: timestamp))
        }

        if let postback = event["postback"] {
            if senderId == accountId { return .skipped(.echo, accountId: accountId, timestamp: timestamp) }
            let title = postback["title"]?.string ?? ""
            let payload = postback["payload"]?.string ?? ""
            guard !title.isEmpty || !payload.isEmpty else { return .invalid("a postback has neither title nor payload") }
            let id = postback["mid"]?.id ?? "postback:\(accountId):\(senderId):\(timestamp)"
            return .message(
                InboundMessage(
                    platform: platform, messageId: id, accountId: accountId, senderId: senderId, timestamp: timestamp,
                    content: .postback(title: title.isEmpty ? payload : title, payload: payload)))
        }

        guard let message = event["message"] else { return .skipped(.other, accountId: accountId, customerId: senderId, timestamp: timestamp) }
        if message["is_echo"]?.bool == true || senderId == accountId {
            // The business's account wrote to the customer (`recipient`).
            guard let customer = event["recipient"]?["id"]?.id, customer != accountId, let mid = message["mid"]?.id else {
                return .skipped(.echo, accountId: accountId, timestamp: timestamp)
            }
            var echo = Echo(platform: platform, accountId: accountId, customerId: customer, messageId: mid, appId: message["app_id"]?.id, timestamp: timestamp)
            echo.text = message["text"]?.string
            return .echo(echo)
        }
        if message["is_deleted"]?.bool == true { return .skipped(.deleted, accountId: accountId, customerId: senderId, timestamp: timestamp) }
        if message["is_unsupported"]?.bool == true { return .skipped(.unsupported, accountId: accountId, customerId: senderId, timestamp: timestamp) }
        guard let mid = message["mid"]?.id else { return .invalid("a message has no mid") }
        let text = message["text"]?.string

        let content: MessageContent
        if let payload = message["quick_reply"]?["payload"]?.string {
            content = .quickReply(text: text ?? payload, payload: payload)
        } else if let story = message["reply_to"]?["story"], let text, !text.isEmpty {
            content = .storyReply(text: text, storyURL: story["url"]?.string)
        } else if let attachments = message["attachments"]?.array, !attachments.isEmpty {
            let answerable = attachments.compactMap { attachment -> Attachment? in
                guard let type = attachment["type"]?.string, answerableAttachmentTypes.contains(type) else { return nil }
                return Attachment(type: type, url: attachment["payload"]?["url"]?.string)
            }
            guard !answerable.isEmpty else { return .skipped(.unsupported, accountId: accountId, customerId: senderId, timestamp: timestamp) }
            content = .attachments(answerable, caption: text)
        } else if let text, !text.isEmpty {
            content = .text(text)
        } else {
            return .skipped(.unsupported, accountId: accountId, customerId: senderId, timestamp: timestamp)
        }
        return .message(
            InboundMessage(
                platform: platform, messageId: mid, accountId: accountId, senderId: senderId, timestamp: timestamp, content: content))
    }

    /// A comment change: Instagram's `comments` / `live_comments` (`value`: `id`, `text`,
    /// `from.id`, `from.username`, `media.id`, `media.media_product_type`, `parent_id`), or a
    /// Page's `feed` change whose `item` is `comment` (`comment_id`, `post_id`, `parent_id`,
    /// `from.id`, `from.name`, `message`, `created_time`, `verb`). Anything else is skipped.
    static func commentChange(_ change: JSON, platform: Platform, accountId: String, entryTime: Int64) -> WebhookEvent {
        let field = change["field"]?.string ?? ""
        guard let value = change["value"] else { return .skipped(.other, accountId: accountId, timestamp: entryTime) }
        let timestamp: Int64
        switch field {
        case "comments" where platform == .instagram, "live_comments" where platform == .instagram:
            timestamp = entryTime
            guard let id = value["id"]?.id, let from = value["from"]?["id"]?.id else { return .invalid("a comment has no id or no from.id") }
            if from == accountId { return .skipped(.ownComment, accountId: accountId, timestamp: timestamp) }
            let comment = Comment(
                id: id, text: String((value["text"]?.string ?? "").prefix(8000)), mediaId: value["media"]?["id"]?.id,
                mediaType: field == "live_comments" ? "live" : value["media"]?["media_product_type"]?.string.map { String($0.prefix(40)) },
                parentId: value["parent_id"]?.id, username: value["from"]?["username"]?.string.map { String($0.prefix(200)) })
            return .message(
                InboundMessage(platform: platform, messageId: id, accountId: accountId, senderId: from, timestamp: timestamp, content: .comment(comment)))
        case "feed" where platform == .messenger:
            guard value["item"]?.string == "comment" else { return .skipped(.other, accountId: accountId, timestamp: entryTime) }
            if let created = value["created_time"] {
                guard let millis = created.epochSecondsAsMilliseconds else { return .invalid("a comment's created_time is not a time") }
                timestamp = millis
            } else {
                timestamp = entryTime
            }
            guard let id = value["comment_id"]?.id, let from = value["from"]?["id"]?.id else {
                return .invalid("a feed comment has no comment_id or no from.id")
            }
            if from == accountId { return .skipped(.ownComment, accountId: accountId, timestamp: timestamp) }
            guard value["verb"]?.string == "add" else { return .skipped(.commentChange, accountId: accountId, customerId: from, timestamp: timestamp) }
            let postId = value["post_id"]?.id
            let parent = value["parent_id"]?.id
            let comment = Comment(
                id: id, text: String((value["message"]?.string ?? "").prefix(8000)), mediaId: postId, mediaType: "post",
                parentId: parent == postId ? nil : parent, username: value["from"]?["name"]?.string.map { String($0.prefix(200)) })
            return .message(
                InboundMessage(platform: platform, messageId: id, accountId: accountId, senderId: from, timestamp: timestamp, content: .comment(comment)))
        default:
            return .skipped(.other, accountId: accountId, timestamp: value["timestamp"]?.epochMilliseconds ?? entryTime)
        }
    }

    /// Attachment types we answer: media, files, shared posts and reels, story mentions.
    static let answerableAttachmentTypes: Set<String> = [
        "image", "video", "audio", "file", "share", "story_mention", "ig_reel", "reel",
    ]

    // MARK: WhatsApp

    /// The account's health changes (WhatsApp Business Platform webhooks):
    /// `phone_number_quality_update` (`display_phone_number`, `event`, `current_limit` or
    /// `max_daily_conversations_per_business`, `old_limit`), `account_update` (`event`,
    /// `phone_number`), `message_template_status_update` (`event`, `message_template_name`,
    /// `message_template_language`, `reason`, `message_template_category`). nil: another field.
    static func whatsAppHealth(_ change: JSON, wabaId: String?, time: JSON?) -> WebhookEvent? {
        let field = change["field"]?.string
        guard ["phone_number_quality_update", "account_update", "message_template_status_update"].contains(field ?? "") else { return nil }
        guard let wabaId, let value = change["value"] else { return .invalid("a WhatsApp account change has no account id or value") }
        func text(_ name: String, max: Int = 200) -> String? { value[name]?.string.map { String($0.prefix(max)) } ?? value[name]?.id }
        let millis = time?.epochMilliseconds.map { $0 < 100_000_000_000 ? $0 * 1000 : $0 } ?? 0
        guard let event = text("event", max: 64), !event.isEmpty else { return .invalid("a WhatsApp account change has no event") }
        let kind: WhatsAppHealthEvent.Kind
        switch field {
        case "phone_number_quality_update":
            kind = .quality(
                displayPhoneNumber: text("display_phone_number", max: 32), event: event,
                limit: text("max_daily_conversations_per_business", max: 32) ?? text("current_limit", max: 32), oldLimit: text("old_limit", max: 32))
        case "account_update":
            kind = .account(event: event, phoneNumber: text("phone_number", max: 32))
        default:
            guard let name = text("message_template_name", max: 512), let language = text("message_template_language", max: 16) else {
                return .invalid("a template status change has no name or language")
            }
            kind = .template(name: name, language: language, status: event, reason: text("reason"), category: text("message_template_category", max: 32))
        }
        return .whatsappHealth(WhatsAppHealthEvent(wabaId: wabaId, kind: kind, timestamp: millis))
    }

    static func whatsAppChange(_ change: JSON) -> [WebhookEvent] {
        guard change["field"]?.string == "messages", let value = change["value"] else {
            return [.skipped(.other, accountId: "", timestamp: 0)]
        }
        guard let phoneNumberId = value["metadata"]?["phone_number_id"]?.id else {
            return [.invalid("a WhatsApp change has no metadata.phone_number_id")]
        }
        var events: [WebhookEvent] = []
        for status in value["statuses"]?.array ?? [] {
            guard let timestamp = status["timestamp"].map({ $0.epochSecondsAsMilliseconds }) ?? 0 else {
                events.append(.invalid("a WhatsApp status's timestamp is not a time"))
                continue
            }
            guard let id = status["id"]?.string, !id.isEmpty, id.utf8.count <= 256, let state = status["status"]?.string, !state.isEmpty,
                state.utf8.count <= 32
            else {
                events.append(.invalid("a WhatsApp status has no message id or no status"))
                continue
            }
            let error = status["errors"]?.array?.first
            events.append(
                .delivery(
                    DeliveryStatus(
                        accountId: phoneNumberId, messageId: id, status: state, recipientId: status["recipient_id"]?.string, timestamp: timestamp,
                        errorCode: error?["code"]?.int64.flatMap { Int(exactly: $0) },
                        errorTitle: (error?["title"]?.string ?? error?["message"]?.string).map { String($0.prefix(300)) })))
        }
        // `contacts[]`: the senders' profile names, by WhatsApp id.
        var names: [String: String] = [:]
        for contact in value["contacts"]?.array ?? [] {
            guard let waId = contact["wa_id"]?.id, let name = contact["profile"]?["name"]?.string?.trimmingSpaces(), !name.isEmpty else { continue }
            names[waId] = String(name.prefix(200))
        }
        for message in value["messages"]?.array ?? [] {
            var event = whatsAppMessage(message, phoneNumberId: phoneNumberId)
            if case .message(var inbound) = event, let name = names[inbound.senderId] {
                inbound.senderName = name
                event = .message(inbound)
            }
            events.append(event)
        }
        return events
    }

    static func whatsAppMessage(_ message: JSON, phoneNumberId: String) -> WebhookEvent {
        guard let from = message["from"]?.id, let id = message["id"]?.id else {
            return .invalid("a WhatsApp message has no from or id")
        }
        guard let timestamp = message["timestamp"].map({ $0.epochSecondsAsMilliseconds }) ?? 0 else {
            return .invalid("a WhatsApp message's timestamp is not a time")
        }
        let type = message["type"]?.string ?? ""
        let content: MessageContent
        switch type {
        case "text":
            guard let body = message["text"]?["body"]?.string, !body.isEmpty else {
                return .invalid("a WhatsApp text message has no body")
            }
            content = .text(body)
        case "image", "video", "audio", "document":
            let media = message[type]
            content = .attachments(
                [Attachment(type: type == "document" ? "file" : type, mediaId: media?["id"]?.id)],
                caption: media?["caption"]?.string)
        case "interactive":
            let interactive = message["interactive"]
            guard let reply = interactive?["button_reply"] ?? interactive?["list_reply"],
                let replyId = reply["id"]?.string
            else {
                return .skipped(.unsupported, accountId: phoneNumberId, customerId: from, timestamp: timestamp)
            }
            content = .quickReply(text: reply["title"]?.string ?? replyId, payload: replyId)
        case "button":
            guard let payload = message["button"]?["payload"]?.string else {
                return .skipped(.unsupported, accountId: phoneNumberId, customerId: from, timestamp: timestamp)
            }
            content = .quickReply(text: message["button"]?["text"]?.string ?? payload, payload: payload)
        case "reaction":
            return .skipped(.reaction, accountId: phoneNumberId, customerId: from, timestamp: timestamp)
        default:
            return .skipped(.unsupported, accountId: phoneNumberId, customerId: from, timestamp: timestamp)
        }
        return .message(
            InboundMessage(
                platform: .whatsapp, messageId: id, accountId: phoneNumberId, senderId: from, timestamp: timestamp, content: content))
    }
}

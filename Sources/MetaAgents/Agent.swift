import Essentials
import HTTPTransport
import MetaWebhooks

/// What the agent is asked (SPEC section 6; the body the HTTP agent receives). One request
/// is one turn: the customer's messages that arrived together, in order.
public struct AgentRequest: Sendable, Codable, Equatable {
    /// `message` (the customer's messages) or `comment` (a comment on the business's post,
    /// answered by a private reply and, where the location allows, a public one).
    public var kind = "message"
    /// The comment, for a turn of `kind` `comment`.
    public var comment: Comment? = nil
    public let businessId: String
    public let locationId: String
    public let platform: String
    public let senderId: String
    /// The turn's text: each message's text, in order, one per line.
    public let text: String
    /// The last message of the turn (the one a reply answers).
    public let messageId: String
    /// Every message of the turn, in order.
    public let messageIds: [String]
    /// Stable for one customer of one tenant on one platform.
    public let conversationId: String
    /// The customer's name when we know it (WhatsApp's profile name, the Instagram or
    /// Messenger user profile).
    public let customerName: String?
    /// What the customer attached: type and URL (Instagram, Messenger) or media id (WhatsApp).
    public let attachments: [Attachment]
    /// What was said while the agent was paused (a person had the conversation), oldest
    /// first: the customer's messages and the business's person's, with their text where the
    /// location keeps it. Absent when nothing was.
    public var duringPause: [EarlierMessage]? = nil
    /// True for the one turn offered when a pause ended with the customer's messages
    /// unanswered (`answerAfterPause`): `text` is what they wrote (where the location keeps
    /// text), `messageId` the last of them, and `duringPause` lists each.
    public var afterPause: Bool? = nil

    /// A message of the pause, as the agent is told of it.
    public struct EarlierMessage: Sendable, Codable, Equatable {
        public let messageId: String
        /// `customer`, or `business` (a person of the business wrote it).
        public let from: String
        /// ISO 8601, UTC.
        public let at: String
        public let text: String?

        /// `from`: `customer` or `business`; `at`: epoch seconds.
        public init(messageId: String, from: String, at epochSeconds: Int64, text: String?) {
            self.messageId = messageId
            self.from = from
            at = ISO8601.format(epochSeconds: epochSeconds)
            self.text = text
        }
    }

    /// The turn `turn` of a customer of the business's location.
    public init(businessId: String, locationId: String, turn: [InboundMessage], customerName: String? = nil) {
        let last = turn.last
        self.businessId = businessId
        self.locationId = locationId
        platform = last?.platform.rawValue ?? ""
        senderId = last?.senderId ?? ""
        text = turn.map(\.content.agentText).filter { !$0.isEmpty }.joined(separator: "\n")
        messageId = last?.messageId ?? ""
        messageIds = turn.map(\.messageId)
        conversationId = "\(businessId):\(locationId):\(platform):\(senderId)"
        self.customerName = customerName
        attachments = turn.flatMap(\.attachments)
        if let comment = last?.content.comment {
            kind = "comment"
            self.comment = comment
        }
    }
}

/// What the agent answered: the text to send (nil: nothing), and whether a person should take
/// the conversation over (the agent pauses itself after sending the text).
public struct AgentReply: Sendable, Equatable {
    public var text: String?
    public var handoff: Bool
    /// For a comment: posted under it, where the location allows public replies.
    public var publicReply: String?

    public init(text: String?, handoff: Bool = false, publicReply: String? = nil) {
        self.text = text
        self.handoff = handoff
        self.publicReply = publicReply
    }
}

public struct AgentError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: String, Sendable { case timeout, unavailable, invalidResponse, throttled, refused }
    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "agent \(code.rawValue): \(message)" }
}

/// The agent port: composes the reply to one turn of the customer. No text: send nothing.
public protocol Agent: Sendable {
    func reply(to request: AgentRequest, timeout: Duration) async throws(AgentError) -> AgentReply
}

/// The local default: a fixed reply that quotes the message, so the whole path runs with
/// nothing else installed. `{text}` in the template is replaced by the customer's text.
public struct EchoAgent: Agent {
    public let template: String

    public init(template: String = "Echo: {text}") {
        self.template = template
    }

    public func reply(to request: AgentRequest, timeout: Duration) async throws(AgentError) -> AgentReply {
        AgentReply(text: template.split(separator: "{text}", omittingEmptySubsequences: false).joined(separator: request.text))
    }
}

/// Any HTTP service: `POST AGENT_HTTP_URL` with the `AgentRequest` as JSON, answering
/// `{"reply": "...", "handoff": true|false}`; an empty or absent reply sends nothing, and
/// `handoff: true` pauses the agent in the conversation (after the reply, if any).
///
/// With a secret (`AGENT_HTTP_SECRET`) every request is signed, so the agent can refuse anyone
/// else: `X-Agent-Signature: t=<unix seconds>,v1=<hex>`, where `<hex>` is HMAC-SHA256, keyed
/// by the secret's bytes, of `<t>` and `.` followed by the body's exact bytes. An agent
/// recomputes it over the raw body it received, compares in constant time, and refuses a `t`
/// more than five minutes from its own clock (a replayed request).
public struct HTTPAgent: Agent {
    public let url: String
    private let transport: any HTTPTransport
    private let secret: [UInt8]?
    private let clock: WallClock
    /// Which addresses the agent may be at (nil: any). A URL a location set reaches only
    /// public ones, checked against the address connected to.
    public let peers: PeerRule?

    public static let signatureHeader = "X-Agent-Signature"

    public init(url: String, transport: any HTTPTransport, secret: [UInt8]? = nil, clock: WallClock = .system, peers: PeerRule? = nil) {
        self.url = url
        self.transport = transport
        self.secret = secret
        self.clock = clock
        self.peers = peers
    }

    /// The header's value for `body` sent at `seconds` (epoch).
    public static func signature(of body: [UInt8], at seconds: Int64, secret: [UInt8]) -> String {
        let signed = Array("\(seconds).".utf8) + body
        return "t=\(seconds),v1=\(Hex.encode(HMACSHA256.authenticationCode(for: signed, key: secret)))"
    }

    public func reply(to request: AgentRequest, timeout: Duration) async throws(AgentError) -> AgentReply {
        guard let body = try? JSONNodeEncoder.encode(request) else { throw AgentError(.invalidResponse, "the request cannot be encoded") }
        let response: OutboundResponse
        var headers = [("Content-Type", "application/json"), ("Accept", "application/json")]
        if let secret { headers.append((Self.signatureHeader, Self.signature(of: Array(body), at: clock.epochSeconds(), secret: secret))) }
        do {
            response = try await transport.send(
                OutboundRequest(method: "POST", url: url, headers: headers, body: Array(body), peers: peers), timeout: timeout)
        } catch {
            throw AgentError(error.kind == .timeout ? .timeout : .unavailable, error.message)
        }
        guard (200..<300).contains(response.status) else {
            throw AgentError(response.status == 429 ? .throttled : .unavailable, "the agent answered HTTP \(response.status)")
        }
        if response.status == 204 { return AgentReply(text: nil) }
        return try Self.reading(response.body, from: "the agent")
    }

    /// An agent's answer, `{"reply": "...", "handoff": true|false}`, or nothing (no reply).
    static func reading(_ body: [UInt8], from agent: String) throws(AgentError) -> AgentReply {
        if body.isEmpty { return AgentReply(text: nil) }
        guard let document = try? JSON.parse(body) else { throw AgentError(.invalidResponse, "\(agent)'s answer is not a JSON object") }
        if document == .null { return AgentReply(text: nil) }
        guard document.object != nil else { throw AgentError(.invalidResponse, "\(agent)'s answer is not a JSON object") }
        let handoff: Bool
        switch document["handoff"] {
        case nil, .null?: handoff = false
        case .bool(let flag)?: handoff = flag
        default: throw AgentError(.invalidResponse, "\(agent)'s \"handoff\" is not true or false")
        }
        func text(_ name: String) throws(AgentError) -> String? {
            switch document[name] {
            case nil, .null?: return nil
            case .string(let text)?: return text.trimmingSpaces().isEmpty ? nil : text
            default: throw AgentError(.invalidResponse, "\(agent)'s \"\(name)\" is not a string")
            }
        }
        return AgentReply(text: try text("reply"), handoff: handoff, publicReply: try text("publicReply"))
    }
}

import AWSSigning
import Essentials
import HTTPTransport
import MetaWebhooks

/// Amazon Bedrock Agents: `InvokeAgent` of the agents runtime
/// (`POST /agents/{agentId}/agentAliases/{agentAliasId}/sessions/{sessionId}/text` on
/// `bedrock-agent-runtime.{region}.amazonaws.com`), SigV4-signed with the signing name
/// `bedrock`, answering an event stream whose `chunk` events carry the reply's bytes (base64).
/// The session id is derived from the tenant and the customer, so the agent keeps the
/// conversation's context across messages. Throttling is retried within the time given.
public struct BedrockAgent: Agent {
    public let agentId: String
    public let agentAliasId: String
    public let endpoint: String
    private let transport: any HTTPTransport
    private let signer: SigV4Signer
    private let backoff: Backoff
    private let clock: WallClock

    public init(
        agentId: String, agentAliasId: String, region: String, endpoint: String? = nil,
        credentials: AWSCredentials, transport: any HTTPTransport,
        backoff: Backoff = Backoff(maxAttempts: 3, base: .milliseconds(200), cap: .seconds(2)), clock: WallClock = .system
    ) {
        self.clock = clock
        self.agentId = agentId
        self.agentAliasId = agentAliasId
        let base = endpoint ?? "https://bedrock-agent-runtime.\(region).amazonaws.com"
        self.endpoint = base.hasSuffix("/") ? String(base.dropLast()) : base
        self.transport = transport
        self.signer = SigV4Signer(credentials: credentials, region: region, service: "bedrock")
        self.backoff = backoff
    }

    /// Stable for one customer of one tenant on one platform; Bedrock allows 2 to 100
    /// characters of `[0-9a-zA-Z._:-]`: a SHA-256 in hex (64 characters).
    public static func sessionId(for request: AgentRequest) -> String {
        Hex.encode(SHA256.hash(Array(request.conversationId.utf8)))
    }

    /// What the agent is told besides the text, as session attributes (strings, as Bedrock
    /// takes them): the tenant, the conversation, the customer's name when known, and the
    /// attachments as a JSON array of `{"type", "url"?, "mediaId"?}`.
    static func sessionAttributes(for request: AgentRequest) -> [String: JSON] {
        var attributes: [String: JSON] = [
            "businessId": .string(request.businessId), "locationId": .string(request.locationId),
            "platform": .string(request.platform), "senderId": .string(request.senderId),
            "conversationId": .string(request.conversationId), "messageIds": .string(request.messageIds.joined(separator: ",")),
        ]
        if let name = request.customerName { attributes["customerName"] = .string(name) }
        if !request.attachments.isEmpty {
            let list = JSON.array(
                request.attachments.map { attachment in
                    var object: [String: JSON] = ["type": .string(attachment.type)]
                    if let url = attachment.url { object["url"] = .string(url) }
                    if let mediaId = attachment.mediaId { object["mediaId"] = .string(mediaId) }
                    return .dictionary(object)
                })
            attributes["attachments"] = .string(String(decoding: list.encoded(), as: UTF8.self))
        }
        if let earlier = request.duringPause, let list = try? JSONNodeEncoder.encode(earlier) {
            attributes["duringPause"] = .string(String(decoding: list, as: UTF8.self))
        }
        if request.afterPause == true { attributes["afterPause"] = "true" }
        attributes["kind"] = .string(request.kind)
        if let comment = request.comment, let encoded = try? JSONNodeEncoder.encode(comment) {
            attributes["comment"] = .string(String(decoding: encoded, as: UTF8.self))
        }
        return attributes
    }

    /// The marker a Bedrock agent writes in its answer to hand the conversation to a person
    /// (its instructions say when); it is taken out of the text sent to the customer.
    public static let handoffMarker = "[[handoff]]"

    /// For a comment, what follows this marker is the public reply (posted under the comment
    /// where the location allows it); what precedes it, the private one.
    public static let publicMarker = "[[public]]"

    /// The answer's text without the markers: the handoff, and a comment's public reply.
    static func reading(_ text: String) -> AgentReply {
        let sections = text.split(separator: publicMarker, maxSplits: 1, omittingEmptySubsequences: false)
        guard sections.count == 2 else { return readingHandoff(text) }
        var reply = readingHandoff(sections[0].trimmingSpaces())
        let publicText = sections[1].split(separator: handoffMarker, omittingEmptySubsequences: false).joined().trimmingSpaces()
        reply.publicReply = publicText.isEmpty ? nil : publicText
        if sections[1].contains(handoffMarker) { reply.handoff = true }
        return reply
    }

    static func readingHandoff(_ text: String) -> AgentReply {
        guard text.contains(handoffMarker) else { return AgentReply(text: text.trimmingSpaces().isEmpty ? nil : text) }
        let cleaned = text.split(separator: handoffMarker, omittingEmptySubsequences: false).joined().trimmingSpaces()
        return AgentReply(text: cleaned.isEmpty ? nil : cleaned, handoff: true)
    }

    public func reply(to request: AgentRequest, timeout: Duration) async throws(AgentError) -> AgentReply {
        let deadline = clock.instant() + timeout
        let url =
            "\(endpoint)/agents/\(SigV4Signer.uriEncode(agentId))/agentAliases/\(SigV4Signer.uriEncode(agentAliasId))"
            + "/sessions/\(Self.sessionId(for: request))/text"
        let body = JSON.dictionary([
            "inputText": .string(request.text),
            "sessionState": ["sessionAttributes": .dictionary(Self.sessionAttributes(for: request))],
        ]).encoded()
        // Only Bedrock's throttling is worth another try, and only with room for a call.
        return try await backoff.run(clock: clock, deadline: deadline, room: .seconds(1)) { (_: Int) async throws(AgentError) -> AgentReply in
            let remaining = clock.remaining(until: deadline)
            guard remaining > .milliseconds(50) else { throw AgentError(.timeout, "no time left for the Bedrock agent") }
            return try await invoke(url: url, body: body, timeout: remaining)
        } retrying: { error in
            error.code == .throttled
        }
    }

    private func invoke(url: String, body: [UInt8], timeout: Duration) async throws(AgentError) -> AgentReply {
        let headers = signer.sign(
            method: "POST", url: url,
            headers: [("Content-Type", "application/json"), ("Accept", "application/vnd.amazon.eventstream")],
            body: body, date: clock.epochSeconds())
        let response: OutboundResponse
        do {
            response = try await transport.send(OutboundRequest(method: "POST", url: url, headers: headers, body: body), timeout: timeout)
        } catch {
            throw AgentError(error.kind == .timeout ? .timeout : .unavailable, "Bedrock: \(error.message)")
        }
        guard (200..<300).contains(response.status) else {
            let type = response.header("x-amzn-ErrorType")?.split(separator: ":").first.map(String.init) ?? "HTTP \(response.status)"
            let message = (try? JSON.parse(response.body))?["message"]?.string ?? ""
            throw Self.error(type: type, message: message, status: response.status)
        }
        var decoder = EventStreamDecoder()
        let messages: [EventStreamMessage]
        do {
            messages = try decoder.feed(response.body)
        } catch {
            throw AgentError(.invalidResponse, "Bedrock: \(error.description)")
        }
        guard !decoder.hasPartialFrame else { throw AgentError(.invalidResponse, "Bedrock: the event stream ended mid-frame") }
        var reply: [UInt8] = []
        for message in messages {
            switch message.header(":message-type") {
            case "exception", "error":
                let type = message.header(":exception-type") ?? message.header(":error-code") ?? "exception"
                let text = (try? JSON.parse(message.payload))?["message"]?.string ?? message.header(":error-message") ?? ""
                // A half reply is never sent: the whole answer fails.
                throw Self.error(type: type, message: text, status: nil)
            default:
                guard message.header(":event-type") == "chunk" else { continue }  // trace, returnControl, files
                guard let encoded = (try? JSON.parse(message.payload))?["bytes"]?.string, let bytes = Base64.decode(encoded) else {
                    throw AgentError(.invalidResponse, "Bedrock: a chunk without base64 bytes")
                }
                reply += bytes
            }
        }
        return Self.reading(String(decoding: reply, as: UTF8.self))
    }

    /// Bedrock's error names, from a header or an exception event, as typed agent errors.
    static func error(type: String, message: String, status: Int?) -> AgentError {
        let detail = "Bedrock \(type)\(message.isEmpty ? "" : ": \(message)")"
        switch type.lowercased() {
        case let name where name.contains("throttling"): return AgentError(.throttled, detail)
        case let name where name.contains("accessdenied"), let name where name.contains("validation"),
            let name where name.contains("resourcenotfound"), let name where name.contains("unrecognizedclient"),
            let name where name.contains("signature"):
            return AgentError(.refused, detail)
        default:
            return AgentError(.unavailable, detail)
        }
    }
}

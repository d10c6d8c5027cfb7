import HTTPTransport

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// What the agent is asked (SPEC section 6; the body the HTTP agent receives).
public struct AgentRequest: Sendable, Codable, Equatable {
    public let businessId: String
    public let locationId: String
    public let platform: String
    public let senderId: String
    public let text: String
    public let messageId: String
    /// Stable for one customer of one tenant on one platform.
    public let conversationId: String

    public init(tenant: Tenant, message: InboundMessage) {
        businessId = tenant.businessId
        locationId = tenant.locationId
        platform = message.platform.rawValue
        senderId = message.senderId
        text = message.content.agentText
        messageId = message.messageId
        conversationId = "\(tenant.businessId):\(tenant.locationId):\(message.platform.rawValue):\(message.senderId)"
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

/// The agent port: composes the reply to one customer message. nil or empty: send nothing.
public protocol Agent: Sendable {
    func reply(to request: AgentRequest, timeout: Duration) async throws(AgentError) -> String?
}

/// The local default: a fixed reply that quotes the message, so the whole path runs with
/// nothing else installed. `{text}` in the template is replaced by the customer's text.
public struct EchoAgent: Agent {
    public let template: String

    public init(template: String = "Echo: {text}") {
        self.template = template
    }

    public func reply(to request: AgentRequest, timeout: Duration) async throws(AgentError) -> String? {
        template.split(separator: "{text}", omittingEmptySubsequences: false).joined(separator: request.text)
    }
}

/// Any HTTP service: `POST AGENT_HTTP_URL` with the `AgentRequest` as JSON, answering
/// `{"reply": "..."}`; an empty or absent reply sends nothing.
public struct HTTPAgent: Agent {
    public let url: String
    private let transport: any HTTPTransport

    public init(url: String, transport: any HTTPTransport) {
        self.url = url
        self.transport = transport
    }

    public func reply(to request: AgentRequest, timeout: Duration) async throws(AgentError) -> String? {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        guard let body = try? encoder.encode(request) else { throw AgentError(.invalidResponse, "the request cannot be encoded") }
        let response: OutboundResponse
        do {
            response = try await transport.send(
                OutboundRequest(
                    method: "POST", url: url, headers: [("Content-Type", "application/json"), ("Accept", "application/json")],
                    body: Array(body)),
                timeout: timeout)
        } catch {
            throw AgentError(error.kind == .timeout ? .timeout : .unavailable, error.message)
        }
        guard (200..<300).contains(response.status) else {
            throw AgentError(response.status == 429 ? .throttled : .unavailable, "the agent answered HTTP \(response.status)")
        }
        if response.body.isEmpty || response.status == 204 { return nil }
        guard let document = try? JSON.parse(response.body), document.object != nil else {
            throw AgentError(.invalidResponse, "the agent's answer is not a JSON object")
        }
        switch document["reply"] {
        case nil, .null?: return nil
        case .string(let text)?: return text.trimmingSpaces().isEmpty ? nil : text
        default: throw AgentError(.invalidResponse, "the agent's \"reply\" is not a string")
        }
    }
}

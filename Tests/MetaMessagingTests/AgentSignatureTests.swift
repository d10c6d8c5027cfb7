import Essentials
import FunctionRuntime
import MetaAgents
import MetaMessaging
import MetaTenancy
import MetaWebhooks
import NIOHTTPTransport
import TestSupport
import Testing

/// An HTTP agent only we can call (issue 37): every request signed, checked here as an agent
/// author would check it.
@Suite struct AgentSignatureTests {
    static let secret = "agent-secret-0123456789abcdef0123456789"

    @Test func theSignatureIsHMACSHA256OverTheTimeADotAndTheExactBody() {
        // The same value Python's hmac gives: hmac.new(secret, b"1767225600." + body, sha256).
        let header = HTTPAgent.signature(of: Array(#"{"text":"hi"}"#.utf8), at: 1_767_225_600, secret: Array(Self.secret.utf8))
        #expect(header == "t=1767225600,v1=655107342f790d15c152fdb30c3363e40c9e67199032fc8a221288e8ec0f595a")
    }

    /// An agent that answers only requests signed with `secret` within five minutes of `now`.
    static func checkingAgent(secret: String, now: @escaping @Sendable () -> Int64) async throws -> LoopbackServer {
        try await LoopbackServer { request in
            guard let header = request.header(HTTPAgent.signatureHeader) else { return .json(401, #"{"error":"unsigned"}"#) }
            var fields: [String: String] = [:]
            for part in header.split(separator: ",") {
                let pair = part.split(separator: "=", maxSplits: 1).map(String.init)
                if pair.count == 2 { fields[pair[0]] = pair[1] }
            }
            guard let t = fields["t"], let seconds = Int64(t), let given = fields["v1"], abs(now() - seconds) <= 300 else {
                return .json(401, #"{"error":"stale or malformed"}"#)
            }
            let expected = Hex.encode(HMACSHA256.authenticationCode(for: Array("\(t).".utf8) + request.body, key: Array(secret.utf8)))
            guard expected == given else { return .json(401, #"{"error":"bad signature"}"#) }
            return .json(200, #"{"reply":"signed and checked"}"#)
        }
    }

    static let request = AgentRequest(
        tenant: Tenant(businessId: "B0100001", locationId: "L0100001"),
        message: InboundMessage(platform: .instagram, messageId: "m_signed", accountId: "1784", senderId: "42", timestamp: 1, content: .text("hi")))

    @Test func theAgentCanTellOurRequestsFromAnyoneElses() async throws {
        let clock = TestClock()
        let agent = try await Self.checkingAgent(secret: Self.secret, now: clock.epochSeconds)
        let signed = HTTPAgent(url: agent.baseURL, transport: NIOHTTPTransport(), secret: Array(Self.secret.utf8), clock: clock.clock)
        #expect(try await signed.reply(to: Self.request, timeout: .seconds(5)).text == "signed and checked")

        // Unsigned, signed with another key, or replayed later: refused by the agent.
        let unsigned = HTTPAgent(url: agent.baseURL, transport: NIOHTTPTransport())
        await #expect(throws: AgentError.self) { try await unsigned.reply(to: Self.request, timeout: .seconds(5)) }
        let stranger = HTTPAgent(
            url: agent.baseURL, transport: NIOHTTPTransport(), secret: Array("someone-else-0123456789abcdef0123456789".utf8), clock: clock.clock)
        await #expect(throws: AgentError.self) { try await stranger.reply(to: Self.request, timeout: .seconds(5)) }
        let old = TestClock(epochMilliseconds: clock.nowMilliseconds - 301_000)
        let replayed = HTTPAgent(url: agent.baseURL, transport: NIOHTTPTransport(), secret: Array(Self.secret.utf8), clock: old.clock)
        await #expect(throws: AgentError.self) { try await replayed.reply(to: Self.request, timeout: .seconds(5)) }
        await agent.shutdown()
    }

    static func agent(_ values: [String: String]) throws(ConfigurationError) -> any Agent {
        let base = ["AGENT_BACKEND": "http", "AGENT_HTTP_URL": "https://agent.example/reply"]
        return try Services(environment: Environment(base.merging(values) { $1 }), transport: NIOHTTPTransport()).agent()
    }

    @Test func inLambdaAnHTTPAgentNeedsItsSecret() throws {
        let lambda = ["AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9001"]
        #expect(throws: ConfigurationError.self) { try Self.agent(lambda) }
        do {
            _ = try Self.agent(lambda.merging(["AGENT_HTTP_SECRET": "short"]) { $1 })
            Issue.record("a secret under 32 characters was taken")
        } catch {
            #expect(error.variable == "AGENT_HTTP_SECRET")
            #expect(!error.description.contains("short"))
        }
        #expect(try Self.agent(lambda.merging(["AGENT_HTTP_SECRET": Self.secret]) { $1 }) is HTTPAgent)
        // Locally the agent may be unsigned (a development agent on the same machine).
        #expect(try Self.agent([:]) is HTTPAgent)
    }

    @Test func theSecretNeverReachesALogLine() {
        let redaction = Redaction(environment: Environment(["AGENT_HTTP_SECRET": Self.secret]))
        let line = redaction.scrub("the agent answered 401 for key \(Self.secret)")
        #expect(!line.contains(Self.secret))
    }
}

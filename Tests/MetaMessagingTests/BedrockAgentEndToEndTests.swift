import AWSSigning
import Foundation
import MetaAgents
import TestSupport
import Testing

/// The Bedrock agent through `receive`, as a process: the deployment's agent answers a
/// customer, and a missing setting is a configuration error naming it. (The agent's own rules
/// are in MetaAgentsTests.)
@Suite struct BedrockAgentEndToEndTests {
    static let credentials = AWSCredentials(accessKeyID: "ASIATESTBEDROCK", secretAccessKey: "bedrock-secret", sessionToken: "bedrock-session-token")

    @Test func receiveAnswersWithTheBedrockAgentEndToEnd() async throws {
        let chunk = EventStreamMessage(
            headers: [(":event-type", .string("chunk")), (":content-type", .string("application/json")), (":message-type", .string("event"))],
            payload: Array(#"{"bytes":"\#(Data("Bună! Avem loc mâine la 10.".utf8).base64EncodedString())"}"#.utf8))
        let server = try await LoopbackServer { request in
            guard SigV4Check.passes(request, credentials: Self.credentials, region: "eu-west-1", service: "bedrock") else { return SigV4Check.refusal }
            return LoopbackServer.Response(status: 200, headers: [("Content-Type", "application/vnd.amazon.eventstream")], body: chunk.encoded())
        }
        let harness = try await FunctionHarness.make(.file)
        let result = try await harness.run(
            "receive", TestEvents.load("instagram-text.json"),
            extra: [
                "AGENT_BACKEND": "bedrock-agent", "BEDROCK_AGENT_ID": "AGENT12345", "BEDROCK_AGENT_ALIAS_ID": "ALIAS67890",
                "BEDROCK_AGENT_ENDPOINT": server.baseURL, "AWS_REGION": "eu-west-1", "AWS_ACCESS_KEY_ID": Self.credentials.accessKeyID,
                "AWS_SECRET_ACCESS_KEY": Self.credentials.secretAccessKey, "AWS_SESSION_TOKEN": Self.credentials.sessionToken ?? "",
            ])
        #expect(result.bodyJSON?["answered"] as? Int == 1, "\(result.stderr.suffix(400))")
        let texts = await harness.graph.messages.compactMap { ($0.body?["message"] as? [String: Any])?["text"] as? String }
        #expect(texts == ["Bună! Avem loc mâine la 10."])
        let missing = try await harness.run("receive", TestEvents.load("instagram-text.json"), extra: ["AGENT_BACKEND": "bedrock-agent"])
        #expect(missing.exitCode == 2)
        #expect(missing.stderr.contains("BEDROCK_AGENT_ID"))
        await server.shutdown()
        await harness.shutdown()
    }
}

import AWSSigning
import Foundation
import MetaAgents
import MetaMessaging
import MetaTenancy
import MetaWebhooks
import NIOHTTPTransport
import TestSupport
import Testing

/// The `lambda` agent backend (issue 37) against a loopback stand-in of Lambda's Invoke API
/// that checks what Lambda checks: the path, the invocation type, and the SigV4 signature
/// (signing name `lambda`) recomputed with the known secret.
@Suite struct LambdaAgentTests {
    typealias H = FunctionHarness
    typealias W = HandlerRulesTests

    static let credentials = AWSCredentials(accessKeyID: "ASIATESTLAMBDA", secretAccessKey: "lambda-secret", sessionToken: "lambda-session-token")
    static let function = "arn:aws:lambda:eu-west-1:123456789012:function:salon-agent"

    /// Lambda's Invoke API: `answer` gets the event the function would get.
    static func standIn(_ answer: @escaping @Sendable ([String: Any]) -> LoopbackServer.Response) async throws -> (LoopbackServer, Recorder) {
        let recorder = Recorder()
        let server = try await LoopbackServer { request in
            _ = await recorder.add(request)
            guard SigV4Check.passes(request, credentials: credentials, region: "eu-west-1", service: "lambda") else { return SigV4Check.refusal }
            let encoded = function.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~"))) ?? ""
            guard request.method == "POST", request.path == "/2015-03-31/functions/\(encoded)/invocations" else {
                return LoopbackServer.Response(
                    status: 404, headers: [("x-amzn-ErrorType", "ResourceNotFoundException")],
                    body: Array(#"{"Type":"User","message":"Function not found"}"#.utf8))
            }
            guard request.header("X-Amz-Invocation-Type") == "RequestResponse", let event = request.jsonBody else {
                return .json(400, #"{"message":"bad request"}"#)
            }
            return answer(event)
        }
        return (server, recorder)
    }

    static func agent(_ server: LoopbackServer, function: String = function) -> LambdaAgent {
        LambdaAgent(function: function, region: "eu-west-1", endpoint: server.baseURL, credentials: credentials, transport: NIOHTTPTransport())
    }

    @Test func theFunctionGetsTheTurnAndItsAnswerIsTheReply() async throws {
        let (server, recorder) = try await Self.standIn { event in
            let text = event["text"] as? String ?? ""
            let ids = (event["messageIds"] as? [String])?.joined(separator: ",") ?? ""
            return .json(200, #"{"reply":"Lambda: \#(text) (\#(ids), \#(event["businessId"] as? String ?? ""))","handoff":true}"#)
        }
        let reply = try await Self.agent(server).reply(to: AgentSignatureTests.request, timeout: .seconds(5))
        #expect(reply == AgentReply(text: "Lambda: hi (m_signed, B0100001)", handoff: true))
        #expect(await recorder.count == 1)
        await server.shutdown()
    }

    @Test func aFunctionsFailureAndLambdasRefusalsAreNamed() async throws {
        let (server, _) = try await Self.standIn { event in
            switch event["text"] as? String {
            case "crash":
                LoopbackServer.Response(
                    status: 200, headers: [("X-Amz-Function-Error", "Unhandled")],
                    body: Array(#"{"errorMessage":"secret detail","errorType":"KeyError"}"#.utf8))
            case "busy":
                LoopbackServer.Response(
                    status: 429, headers: [("x-amzn-ErrorType", "TooManyRequestsException")], body: Array(#"{"message":"Rate exceeded"}"#.utf8))
            case "nothing": LoopbackServer.Response(status: 200, body: Array("null".utf8))
            default: .json(200, #"{"reply":42}"#)
            }
        }
        func ask(_ text: String) async -> Result<AgentReply, AgentError> {
            let request = AgentRequest(
                tenant: H.tenant,
                message: InboundMessage(platform: .instagram, messageId: "m_l", accountId: H.instagramId, senderId: "42", timestamp: 1, content: .text(text)))
            do { return .success(try await Self.agent(server).reply(to: request, timeout: .seconds(5))) } catch { return .failure(error) }
        }
        guard case .failure(let crash) = await ask("crash") else { Issue.record("a crashed function answered"); return }
        #expect(crash.code == .unavailable)
        #expect(crash.message.contains("KeyError"))
        #expect(!crash.message.contains("secret detail"))
        guard case .failure(let busy) = await ask("busy") else { Issue.record("a throttled call answered"); return }
        #expect(busy.code == .throttled)
        #expect(try await ask("nothing").get() == AgentReply(text: nil))
        guard case .failure(let wrong) = await ask("wrong") else { Issue.record("a number was taken for a reply"); return }
        #expect(wrong.code == .invalidResponse)

        // Another function than the one Lambda has, or credentials Lambda does not know.
        do {
            _ = try await Self.agent(server, function: "other").reply(to: AgentSignatureTests.request, timeout: .seconds(5))
            Issue.record("an unknown function answered")
        } catch { #expect(error.code == .refused) }
        let stranger = LambdaAgent(
            function: Self.function, region: "eu-west-1", endpoint: server.baseURL,
            credentials: AWSCredentials(accessKeyID: "ASIATESTLAMBDA", secretAccessKey: "wrong", sessionToken: "lambda-session-token"),
            transport: NIOHTTPTransport())
        do {
            _ = try await stranger.reply(to: AgentSignatureTests.request, timeout: .seconds(5))
            Issue.record("a request with a wrong signature answered")
        } catch { #expect(error.code == .refused) }
        await server.shutdown()
    }

    /// A location whose settings name the function is answered by it; a function the
    /// deployment no longer allows is not called at all.
    @Test func aLocationsLambdaAgentAnswersItsCustomers() async throws {
        let (server, recorder) = try await Self.standIn { event in
            .json(200, #"{"reply":"Programarea e confirmată, \#(event["customerName"] as? String ?? "")"}"#)
        }
        let deployment = TakeoverTests.ScriptedAgent(AgentReply(text: "the deployment's agent"))
        let agents = Agents(
            fallback: deployment, transport: NIOHTTPTransport(), region: "eu-west-1", credentials: Self.credentials, lambdaEndpoint: server.baseURL,
            lambdaFunctions: [Self.function])
        let world = try await W.world(agent: deployment, agents: agents)
        await world.harness.graph.setProfile(of: TakeoverTests.customer, ["name": "Ana"])
        #expect(try await world.directory.setSettings(LocationSettings(agent: .lambda(function: Self.function)), of: H.tenant))
        _ = try await W.deliver(world, TakeoverTests.customerMessage("m_lambda_1", "mâine la 10?"))
        #expect(await world.harness.graph.messages.compactMap(LocationSettingsTests.sentText) == ["Programarea e confirmată, Ana"])
        #expect(deployment.requests.isEmpty)

        let narrowed = Agents(fallback: deployment, transport: NIOHTTPTransport(), region: "eu-west-1", credentials: Self.credentials, lambdaFunctions: [])
        do {
            _ = try await narrowed.agent(for: .lambda(function: Self.function)).reply(to: AgentSignatureTests.request, timeout: .seconds(1))
            Issue.record("a function the deployment no longer allows was called")
        } catch { #expect(error.code == .refused) }
        #expect(await recorder.count == 1)
        await world.harness.shutdown()
        await server.shutdown()
    }
}

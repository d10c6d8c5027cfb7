import AWSSigning
import Foundation
import MetaAgents
import MetaWebhooks
import NIOHTTPTransport
import TestSupport
import Testing

@Suite struct EventStreamTests {
    static func chunk(_ text: String) -> EventStreamMessage {
        EventStreamMessage(
            headers: [(":event-type", .string("chunk")), (":content-type", .string("application/json")), (":message-type", .string("event"))],
            payload: Array(#"{"bytes":"\#(Data(text.utf8).base64EncodedString())"}"#.utf8))
    }

    static func exception(_ type: String, _ message: String) -> EventStreamMessage {
        EventStreamMessage(
            headers: [(":exception-type", .string(type)), (":content-type", .string("application/json")), (":message-type", .string("exception"))],
            payload: Array(#"{"message":"\#(message)"}"#.utf8))
    }

    static func hex(_ text: String) -> [UInt8] {
        stride(from: 0, to: text.count, by: 2).map { UInt8(text.dropFirst($0).prefix(2), radix: 16) ?? 0 }
    }

    @Test func aFrameBuiltByZlibsCRC32Decodes() throws {
        // Built with Python's struct and zlib.crc32, independently of our encoder.
        let frame = Self.hex(
            "000000770000004bcfde7bae0b3a6576656e742d747970650700056368756e6b0d3a636f6e74656e742d747970650700106170706c69636174696f6e2f6a736f6e0d3a6d6573736167652d747970650700056576656e747b226279746573223a225347567362473867643239796247513d227ddc7ce5d0"
        )
        var decoder = EventStreamDecoder()
        let messages = try decoder.feed(frame)
        #expect(messages.count == 1)
        #expect(messages.first?.header(":event-type") == "chunk")
        #expect(messages.first?.payload == Array(#"{"bytes":"SGVsbG8gd29ybGQ="}"#.utf8))
        #expect(Self.chunk("Hello world").encoded() == frame)
    }

    @Test func severalChunksAndEveryHeaderType() throws {
        let typed = EventStreamMessage(
            headers: [
                ("t", .bool(true)), ("f", .bool(false)), ("b", .byte(-3)), ("s", .short(-300)), ("i", .int(70000)), ("l", .long(-5_000_000_000)),
                ("bytes", .bytes([1, 2, 3])), ("str", .string("é")), ("ts", .timestamp(1_795_687_200_000)), ("id", .uuid(Array(0..<16))),
            ], payload: [])
        var decoder = EventStreamDecoder()
        let messages = try decoder.feed(Self.chunk("Bună ").encoded() + typed.encoded() + Self.chunk("ziua!").encoded())
        #expect(messages == [Self.chunk("Bună "), typed, Self.chunk("ziua!")])
    }

    @Test func aFrameSplitAcrossReads() throws {
        let bytes = Self.chunk("one").encoded() + Self.chunk("two").encoded()
        var decoder = EventStreamDecoder()
        var messages: [EventStreamMessage] = []
        for byte in bytes { messages += try decoder.feed([byte]) }
        #expect(messages == [Self.chunk("one"), Self.chunk("two")])
        #expect(!decoder.hasPartialFrame)
        _ = try decoder.feed(bytes.prefix(20))
        #expect(decoder.hasPartialFrame)
    }

    @Test func corruptedChecksumsAndOversizeLengthsAreErrors() {
        var prelude = Self.chunk("x").encoded()
        prelude[9] ^= 0xFF
        var message = Self.chunk("x").encoded()
        message[message.count - 10] ^= 0x01
        var oversize = [UInt8](repeating: 0, count: 12)
        oversize[0] = 0x7F  // 2 GB
        let crc = Self.crc32(Array(oversize[0..<8]))
        oversize[8] = UInt8(crc >> 24); oversize[9] = UInt8((crc >> 16) & 0xFF); oversize[10] = UInt8((crc >> 8) & 0xFF); oversize[11] = UInt8(crc & 0xFF)
        for (name, bytes) in [("prelude CRC", prelude), ("message CRC", message), ("oversize", oversize)] {
            var decoder = EventStreamDecoder()
            #expect(throws: EventStreamError.self, "\(name)") { try decoder.feed(bytes) }
        }
    }

    static func crc32(_ bytes: [UInt8]) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes {
            crc ^= UInt32(byte)
            for _ in 0..<8 { crc = crc & 1 == 1 ? 0xEDB8_8320 ^ (crc >> 1) : crc >> 1 }
        }
        return ~crc
    }
}

/// The Bedrock adapter against a loopback stand-in of the agents runtime that checks the
/// path, the SigV4 signature (recomputed with the known secret) and the body, and answers
/// with a real event stream.
@Suite struct BedrockAgentTests {
    static let credentials = AWSCredentials(accessKeyID: "ASIATESTBEDROCK", secretAccessKey: "bedrock-secret", sessionToken: "bedrock-session-token")

    static func standIn(_ answer: @escaping @Sendable (LoopbackServer.Request, Int) -> LoopbackServer.Response) async throws -> (LoopbackServer, Recorder) {
        let recorder = Recorder()
        let server = try await LoopbackServer { request in
            let count = await recorder.add(request)
            guard SigV4Check.passes(request, credentials: credentials, region: "eu-west-1", service: "bedrock") else { return SigV4Check.refusal }
            return answer(request, count)
        }
        return (server, recorder)
    }

    static func stream(_ messages: [EventStreamMessage]) -> LoopbackServer.Response {
        LoopbackServer.Response(
            status: 200, headers: [("Content-Type", "application/vnd.amazon.eventstream"), ("x-amz-bedrock-agent-session-id", "s")],
            body: messages.flatMap { $0.encoded() })
    }

    static let request = AgentRequest(
        demo: InboundMessage(
            platform: .instagram, messageId: "m_1", accountId: "17841400000000001", senderId: "1234567890123456",
            timestamp: 1, content: .text("Aveți loc mâine?")))

    static func agent(_ server: LoopbackServer) -> BedrockAgent {
        BedrockAgent(
            agentId: "AGENT12345", agentAliasId: "ALIAS67890", region: "eu-west-1", endpoint: server.baseURL,
            credentials: credentials, transport: NIOHTTPTransport(), backoff: .init(maxAttempts: 3, base: .milliseconds(10)))
    }

    /// A comment: the agent is told what it is, and the text after `[[public]]` is the public reply.
    @Test func aCommentsPublicReplyFollowsThePublicMarker() async throws {
        let (server, recorder) = try await Self.standIn { _, _ in
            Self.stream([EventStreamTests.chunk("Vă scriu în privat. [[pub"), EventStreamTests.chunk("lic]] Detalii în mesaje!")])
        }
        let comment = Comment(id: "17858893269000001", text: "PREȚ", mediaId: "1789", mediaType: "REELS", username: "ana.pop")
        let request = AgentRequest(
            demo: InboundMessage(
                platform: .instagram, messageId: comment.id, accountId: "17841400000000001", senderId: "1234567890123456", timestamp: 1,
                content: .comment(comment)))
        let reply = try await Self.agent(server).reply(to: request, timeout: .seconds(5))
        #expect(reply == AgentReply(text: "Vă scriu în privat.", publicReply: "Detalii în mesaje!"))
        let attributes = try #require(
            ((await recorder.all.first?.jsonBody)?["sessionState"] as? [String: Any])?["sessionAttributes"] as? [String: String])
        #expect(attributes["kind"] == "comment")
        let told = try #require(attributes["comment"]).data(using: .utf8).flatMap { try? JSONSerialization.jsonObject(with: $0) } as? [String: Any]
        #expect(told?["id"] as? String == comment.id)
        #expect(told?["mediaType"] as? String == "REELS")
        await server.shutdown()
    }

    @Test func theHandoffMarkerHandsOverAndNeverReachesTheCustomer() async throws {
        let (server, recorder) = try await Self.standIn { request, _ in
            let text = request.jsonBody?["inputText"] as? String ?? ""
            return Self.stream(text.contains("om") ? [EventStreamTests.chunk("Vă preia un coleg. [[handoff]]")] : [EventStreamTests.chunk("[[handoff]]")])
        }
        // A turn of two messages, one with a photo, from a customer whose name we know.
        let turn = [
            InboundMessage(
                platform: .whatsapp, messageId: "wamid.A", accountId: "106540352242922", senderId: "16505551234", timestamp: 1, content: .text("vreau un om")),
            InboundMessage(
                platform: .whatsapp, messageId: "wamid.B", accountId: "106540352242922", senderId: "16505551234", timestamp: 2,
                content: .attachments([Attachment(type: "image", mediaId: "1479537139650973")], caption: nil)),
        ]
        var request = AgentRequest(businessId: "B0100001", locationId: "L0100001", turn: turn, customerName: "Ana Pop")
        request.duringPause = [AgentRequest.EarlierMessage(messageId: "wamid.0", from: "business", at: 0, text: "Revin")]
        request.afterPause = true
        let reply = try await Self.agent(server).reply(to: request, timeout: .seconds(5))
        #expect(reply == AgentReply(text: "Vă preia un coleg.", handoff: true))
        let attributes = try #require(
            ((await recorder.all.first?.jsonBody)?["sessionState"] as? [String: Any])?["sessionAttributes"] as? [String: String])
        #expect(attributes["customerName"] == "Ana Pop")
        #expect(attributes["messageIds"] == "wamid.A,wamid.B")
        #expect(attributes["conversationId"] == "B0100001:L0100001:whatsapp:16505551234")
        let attachments = try #require(attributes["attachments"]).data(using: .utf8).flatMap { try? JSONSerialization.jsonObject(with: $0) }
        #expect((attachments as? [[String: String]]) == [["type": "image", "mediaId": "1479537139650973"]])
        let earlier = try #require(attributes["duringPause"]).data(using: .utf8).flatMap { try? JSONSerialization.jsonObject(with: $0) }
        #expect((earlier as? [[String: String]]) == [["messageId": "wamid.0", "from": "business", "at": "1970-01-01T00:00:00Z", "text": "Revin"]])
        #expect(attributes["afterPause"] == "true")

        // The marker alone: a handoff with nothing to send.
        let silent = AgentRequest(
            demo: InboundMessage(platform: .instagram, messageId: "m_2", accountId: "1", senderId: "2", timestamp: 1, content: .text("salut")))
        #expect(try await Self.agent(server).reply(to: silent, timeout: .seconds(5)) == AgentReply(text: nil, handoff: true))
        await server.shutdown()
    }

    @Test func theReplyIsTheChunksOfAnEventStream() async throws {
        let (server, recorder) = try await Self.standIn { _, _ in
            Self.stream([
                EventStreamTests.chunk("Da, "),
                EventStreamMessage(headers: [(":event-type", .string("trace")), (":message-type", .string("event"))], payload: Array("{}".utf8)),
                EventStreamTests.chunk("avem loc la 10."),
            ])
        }
        let reply = try await Self.agent(server).reply(to: Self.request, timeout: .seconds(5))
        #expect(reply == AgentReply(text: "Da, avem loc la 10."))
        let sent = try #require(await recorder.all.first)
        #expect(sent.method == "POST")
        let session = BedrockAgent.sessionId(for: Self.request)
        #expect(sent.path == "/agents/AGENT12345/agentAliases/ALIAS67890/sessions/\(session)/text")
        #expect(session.count == 64)
        #expect(session == BedrockAgent.sessionId(for: Self.request))
        let body = try #require(sent.jsonBody)
        #expect(body["inputText"] as? String == "Aveți loc mâine?")
        let attributes = (body["sessionState"] as? [String: Any])?["sessionAttributes"] as? [String: String]
        #expect(
            attributes == [
                "businessId": "B0100001", "locationId": "L0100001", "platform": "instagram", "senderId": "1234567890123456",
                "conversationId": "B0100001:L0100001:instagram:1234567890123456", "messageIds": "m_1", "kind": "message",
            ])
        await server.shutdown()
    }

    @Test func anExceptionEventFailsTheWholeReply() async throws {
        let (server, _) = try await Self.standIn { _, _ in
            Self.stream([EventStreamTests.chunk("half a "), EventStreamTests.exception("accessDeniedException", "not allowed")])
        }
        do {
            _ = try await Self.agent(server).reply(to: Self.request, timeout: .seconds(5))
            Issue.record("a half reply was returned")
        } catch {
            #expect(error.code == .refused)
            #expect(error.message.contains("accessDeniedException"))
        }
        await server.shutdown()
    }

    @Test func throttlingIsRetriedThenSucceeds() async throws {
        let (server, recorder) = try await Self.standIn { _, count in
            count == 1
                ? Self.stream([EventStreamTests.exception("throttlingException", "Rate exceeded")])
                : count == 2
                    ? LoopbackServer.Response(
                        status: 429, headers: [("x-amzn-ErrorType", "ThrottlingException:http://internal.amazon.com/")],
                        body: Array(#"{"message":"slow down"}"#.utf8))
                    : Self.stream([EventStreamTests.chunk("ok")])
        }
        let reply = try await Self.agent(server).reply(to: Self.request, timeout: .seconds(10))
        #expect(reply == AgentReply(text: "ok"))
        #expect(await recorder.count == 3)
        await server.shutdown()
    }

    @Test func aCorruptStreamIsAnInvalidResponse() async throws {
        let (server, _) = try await Self.standIn { _, _ in
            var bytes = EventStreamTests.chunk("x").encoded()
            bytes[bytes.count - 1] ^= 0xFF
            return LoopbackServer.Response(status: 200, headers: [("Content-Type", "application/vnd.amazon.eventstream")], body: bytes)
        }
        do {
            _ = try await Self.agent(server).reply(to: Self.request, timeout: .seconds(5))
            Issue.record("a corrupt stream was accepted")
        } catch {
            #expect(error.code == .invalidResponse)
        }
        await server.shutdown()
    }
}

extension AgentRequest {
    /// One message of the demo location's customer, as the core would ask it.
    init(demo message: InboundMessage) {
        self.init(businessId: "B0100001", locationId: "L0100001", turn: [message], customerName: message.senderName)
    }
}

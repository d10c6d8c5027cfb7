import Essentials
import Foundation
import FunctionRuntime
import KeyValueStore
import MetaAgents
import MetaGraph
import MetaMessaging
import MetaTenancy
import MetaWebhooks
import NIOHTTPTransport
import Synchronization
import TestSupport
import Testing

/// Human takeover and a conversation that feels alive, in process against the Graph stand-in:
/// a person's answer pauses the agent, the agent can hand over, a business's tools pause and
/// resume it, the customer sees "seen" and "typing", a long reply arrives whole in parts, a
/// burst is one turn, and the agent knows who it talks to.
@Suite struct TakeoverTests {
    typealias H = FunctionHarness
    typealias W = HandlerRulesTests

    /// An agent that answers the same thing every time and keeps what it was asked.
    final class ScriptedAgent: Agent {
        let answer: AgentReply
        let asked = Mutex<[AgentRequest]>([])

        init(_ answer: AgentReply) { self.answer = answer }

        func reply(to request: AgentRequest, timeout: Duration) async throws(AgentError) -> AgentReply {
            asked.withLock { $0.append(request) }
            return answer
        }

        var requests: [AgentRequest] { asked.withLock { $0 } }
    }

    static let customer = "1234567890123456"

    /// What the business's account sent, as Meta echoes it: Instagram (`message` with `is_echo`)
    /// or Messenger (`message_echoes`, with `app_id` when an app sent it).
    static func echo(
        mid: String, customer: String = customer, platform: Platform = .instagram, appId: String? = nil, timestamp: Int64 = WallClock.epochMilliseconds()
    )
        -> String
    {
        let account = platform == .instagram ? H.instagramId : H.pageId
        let app = appId.map { #","app_id":\#($0)"# } ?? ""
        let event =
            #"{"sender":{"id":"\#(account)"},"recipient":{"id":"\#(customer)"},"timestamp":\#(timestamp),"message":{"mid":"\#(mid)","is_echo":true,"text":"Bună, vă ajut eu"\#(app)}}"#
        return H.messaging(object: platform == .instagram ? "instagram" : "page", account: account, events: [event])
    }

    static func customerMessage(_ mid: String, _ text: String = "mai sunteți acolo?", platform: Platform = .instagram) -> String {
        platform == .instagram
            ? H.messaging(events: [H.textEvent(mid: mid, text: text)])
            : H.messaging(object: "page", account: H.pageId, events: [H.textEvent(mid: mid, text: text, recipient: H.pageId)])
    }

    static func state(_ world: W.World, _ platform: Platform = .instagram, customer: String = customer) async throws -> Conversations.State {
        try await world.conversations.state(platform: platform, account: platform == .whatsapp ? H.phoneNumberId : H.pageId, customer: customer)
    }

    // MARK: A person answering pauses the agent

    @Test(arguments: StoreBackend.allCases)
    func aPersonsEchoPausesTheAgentAndOurOwnDoesNot(_ backend: StoreBackend) async throws {
        let world = try await W.world(backend: backend)
        let first = try await W.deliver(world, Self.customerMessage("m_take_1", "bună"))
        #expect(W.summary(first)["answered"] as? Int == 1)
        let ours = try #require(await world.harness.graph.sentMessageIds.last)

        // The echo of our own reply: recognised by its id, nothing paused.
        let ownEcho = try await W.deliver(world, Self.echo(mid: ours))
        #expect(W.summary(ownEcho)["humanReplies"] as? Int == 0)
        #expect(try await Self.state(world).pausedUntil == nil)

        // An echo nobody recorded: the owner answered from the Instagram app.
        let start = world.clock.now
        let human = try await W.deliver(world, Self.echo(mid: "m_written_by_a_person"))
        #expect(W.summary(human)["humanReplies"] as? Int == 1)
        let paused = try await Self.state(world)
        #expect(paused.pausedBy == .human)
        #expect(paused.pausedUntil == start + 3600)

        // While paused: accepted, recorded, acknowledged, not answered.
        let during = try await W.deliver(world, Self.customerMessage("m_take_2"))
        #expect(during.status == 200)
        #expect(W.summary(during)["paused"] as? Int == 1)
        #expect(W.summary(during)["answered"] as? Int == 0)
        #expect(try await world.ledger.status(of: "m_take_2") == .paused)
        #expect(await world.harness.graph.messages.count == 1)
        // Nor shown as being read by the agent: the person has it.
        #expect(await world.harness.graph.senderActions.count == 2)
        // A redelivery of it stays unanswered.
        let again = try await W.deliver(world, Self.customerMessage("m_take_2"))
        #expect(W.summary(again)["duplicates"] as? Int == 1)

        // Once the pause ends, the agent answers again.
        world.clock.advance(3601)
        let after = try await W.deliver(world, Self.customerMessage("m_take_3", "alo"))
        #expect(W.summary(after)["answered"] as? Int == 1)
        #expect(await world.harness.graph.messages.count == 2)
        await world.harness.shutdown()
    }

    // MARK: An echo that overtakes our own send (Instagram echoes carry no app_id)

    /// The customer's message answered with a Send API that holds its answer until `answerAt`;
    /// returns once the stand-in has the send (our reply is then on its way, its id unknown).
    static func slowReply(_ world: W.World, mid: String, replyId: String, answerAt: ContinuousClock.Instant) async throws -> Task<HTTPResponse, any Error> {
        await world.harness.graph.script(
            [.json(200, #"{"recipient_id":"\#(customer)","message_id":"\#(replyId)"}"#)], pathSuffix: "/messages", answerAt: answerAt)
        let answering = Task {
            let context = world.context(seconds: 15)
            let response = try await world.receive.handle(W.webhook(Self.customerMessage(mid, "bună")), context: context)
            await context.afterResponse.run(before: .now + .seconds(5))
            return response
        }
        while await world.harness.graph.messages.isEmpty { try await Task.sleep(for: .milliseconds(5)) }
        return answering
    }

    @Test func ourEchoArrivingBeforeTheSendAPIAnswersNeverPausesTheAgent() async throws {
        let world = try await W.world(senderActions: false)
        let answering = try await Self.slowReply(world, mid: "m_slow_1", replyId: "m_SLOW_REPLY", answerAt: .now + .seconds(1))
        // Meta echoes the reply before its Send API answers us: the echo waits for the turn.
        let echo = try await W.deliver(world, Self.echo(mid: "m_SLOW_REPLY"))
        #expect(echo.status == 200)
        #expect(W.summary(echo)["humanReplies"] as? Int == 0)
        #expect(W.summary(try await answering.value)["answered"] as? Int == 1)
        #expect(try await Self.state(world).pausedUntil == nil)
        // The agent answers the next message.
        let next = try await W.deliver(world, Self.customerMessage("m_slow_2"))
        #expect(W.summary(next)["answered"] as? Int == 1)
        await world.harness.shutdown()
    }

    @Test func aPersonsEchoWhileOurReplyIsOnItsWayPausesOnceTheTurnSettles() async throws {
        let world = try await W.world(senderActions: false)
        let answering = try await Self.slowReply(world, mid: "m_slow_3", replyId: "m_SLOW_REPLY_3", answerAt: .now + .seconds(1))
        let start = world.clock.now
        let human = try await W.deliver(world, Self.echo(mid: "m_typed_by_the_owner"))
        #expect(W.summary(human)["humanReplies"] as? Int == 1)
        #expect(W.summary(try await answering.value)["answered"] as? Int == 1)
        let state = try await Self.state(world)
        #expect(state.pausedBy == .human)
        #expect(state.pausedUntil == start + 3600)
        await world.harness.shutdown()
    }

    @Test func anEchoWhoseTurnOutlastsItsBudgetIsAskedForAgain() async throws {
        // The reply's delivery may take 12 s; its Send API answers after 7 s, long after the
        // echo's delivery (2 s) has given up, however loaded the machine.
        let world = try await W.world(senderActions: false, inlineBudget: .seconds(12))
        let answering = try await Self.slowReply(world, mid: "m_slow_4", replyId: "m_SLOW_REPLY_4", answerAt: .now + .seconds(7))
        // A delivery with 2 s left: the turn is still sending when its time is up.
        let context = world.context(seconds: 2)
        let echo = try await world.receive.handle(W.webhook(Self.echo(mid: "m_SLOW_REPLY_4")), context: context)
        #expect(echo.status == 500)
        #expect(W.summary(echo)["echoesPending"] as? Int == 1)
        #expect(W.summary(echo)["humanReplies"] as? Int == 0)
        #expect(try await Self.state(world).pausedUntil == nil)
        // Meta's redelivery, once the turn settled, finds the id: ours.
        #expect(W.summary(try await answering.value)["answered"] as? Int == 1)
        let again = try await W.deliver(world, Self.echo(mid: "m_SLOW_REPLY_4"))
        #expect(again.status == 200)
        #expect(W.summary(again)["humanReplies"] as? Int == 0)
        #expect(try await Self.state(world).pausedUntil == nil)
        await world.harness.shutdown()
    }

    @Test func everyHumanMessageExtendsThePause() async throws {
        let world = try await W.world()
        let start = world.clock.now
        _ = try await W.deliver(world, Self.echo(mid: "m_person_1"))
        world.clock.advance(1800)
        _ = try await W.deliver(world, Self.echo(mid: "m_person_2"))
        #expect(try await Self.state(world).pausedUntil == start + 1800 + 3600)
        world.clock.advance(3000)
        // 80 minutes after the first answer, still within an hour of the second.
        let during = try await W.deliver(world, Self.customerMessage("m_extend"))
        #expect(W.summary(during)["paused"] as? Int == 1)
        await world.harness.shutdown()
    }

    @Test func messengerEchoesAreOursByAppIdOrByTheSentId() async throws {
        let world = try await W.world()
        // Our app's id: ours, whatever the id.
        let ours = try await W.deliver(world, Self.echo(mid: "m_unrecorded", customer: "psid", platform: .messenger, appId: W.appId))
        #expect(W.summary(ours)["humanReplies"] as? Int == 0)
        #expect(try await Self.state(world, .messenger, customer: "psid").pausedUntil == nil)
        // Another app (a CRM) or none (the Page inbox): a person.
        let other = try await W.deliver(world, Self.echo(mid: "m_crm", customer: "psid", platform: .messenger, appId: "263902037430900"))
        #expect(W.summary(other)["humanReplies"] as? Int == 1)
        let inbox = try await W.deliver(world, Self.echo(mid: "m_inbox", customer: "42", platform: .messenger))
        #expect(W.summary(inbox)["humanReplies"] as? Int == 1)
        #expect(try await Self.state(world, .messenger, customer: "42").pausedBy == .human)
        await world.harness.shutdown()
    }

    @Test func aPersonsMessageThroughSendPausesTheAgent() async throws {
        let world = try await W.world()
        let request = try SendHandler.parse([
            "businessId": "B0100001", "platform": "instagram", "recipientId": .string(Self.customer), "message": ["text": "Vă sun eu."],
            "humanAgent": true,
        ])
        _ = try await world.send.send(request, context: world.context())
        #expect(try await Self.state(world).pausedBy == .human)
        // Its echo is ours (recorded), and changes nothing.
        let sent = try #require(await world.harness.graph.sentMessageIds.last)
        #expect(W.summary(try await W.deliver(world, Self.echo(mid: sent)))["humanReplies"] as? Int == 0)
        await world.harness.shutdown()
    }

    // MARK: The agent hands over

    @Test func theAgentCanHandOverWithOrWithoutAReply() async throws {
        let handing = ScriptedAgent(AgentReply(text: "Vă preia un coleg imediat.", handoff: true))
        let world = try await W.world(agent: handing)
        let first = try await W.deliver(world, Self.customerMessage("m_hand_1", "vreau să vorbesc cu cineva"))
        #expect(W.summary(first)["answered"] as? Int == 1)
        #expect(await world.harness.graph.messages.compactMap(\.text) == ["Vă preia un coleg imediat."])
        #expect(try await Self.state(world).pausedBy == .agent)
        #expect(try await world.store(of: "m_hand_1")?["detail"]?.string == "handed over")
        let next = try await W.deliver(world, Self.customerMessage("m_hand_2"))
        #expect(W.summary(next)["paused"] as? Int == 1)
        #expect(handing.requests.count == 1)
        await world.harness.shutdown()

        let silent = try await W.world(agent: ScriptedAgent(AgentReply(text: nil, handoff: true)))
        let only = try await W.deliver(silent, Self.customerMessage("m_hand_3"))
        #expect(W.summary(only)["noReply"] as? Int == 1)
        #expect(await silent.harness.graph.messages.isEmpty)
        #expect(try await Self.state(silent).pausedBy == .agent)
        // The typing indicator it showed is taken away.
        #expect(await silent.harness.graph.senderActions.last?.body?["sender_action"] as? String == "typing_off")
        await silent.harness.shutdown()
    }

    @Test func theHTTPAgentsHandoffIsRead() async throws {
        let agent = try await LoopbackServer { request in
            switch request.jsonBody?["text"] as? String {
            case "both": .json(200, #"{"reply":"Un coleg vă răspunde.","handoff":true}"#)
            case "only": .json(200, #"{"handoff":true}"#)
            case "bad": .json(200, #"{"reply":"x","handoff":"yes"}"#)
            default: .json(200, #"{"reply":"ok","handoff":false}"#)
            }
        }
        let http = HTTPAgent(url: agent.baseURL, transport: NIOHTTPTransport())
        func ask(_ text: String) async throws(AgentError) -> AgentReply {
            let message = InboundMessage(platform: .instagram, messageId: "m", accountId: H.instagramId, senderId: "1", timestamp: 1, content: .text(text))
            return try await http.reply(to: AgentRequest(tenant: H.tenant, message: message), timeout: .seconds(5))
        }
        #expect(try await ask("both") == AgentReply(text: "Un coleg vă răspunde.", handoff: true))
        #expect(try await ask("only") == AgentReply(text: nil, handoff: true))
        #expect(try await ask("plain") == AgentReply(text: "ok", handoff: false))
        await #expect(throws: AgentError(.invalidResponse, "the agent's \"handoff\" is not true or false")) { _ = try await ask("bad") }
        await agent.shutdown()
    }

    // MARK: Pause and resume on request

    @Test(arguments: StoreBackend.allCases)
    func pauseAndResumeThroughTheFunction(_ backend: StoreBackend) async throws {
        let harness = try await H.make(backend)
        func control(_ action: String, _ extra: String = "") async throws -> ProcessResult {
            try await harness.run(
                "send",
                Array(
                    #"{"action":"\#(action)","businessId":"B0100001","platform":"instagram","customerId":"\#(Self.customer)"\#(extra)}"#.utf8))
        }
        let paused = try await control("pause", #","minutes":15"#)
        #expect(paused.exitCode == 0, "\(paused.stderr)")
        #expect(paused.json?["paused"] as? Bool == true)
        let until = try #require(paused.json?["pausedUntil"] as? String)
        let expected = Date().addingTimeInterval(15 * 60)
        let parsed = try #require(ISO8601DateFormatter().date(from: until))
        #expect(abs(parsed.timeIntervalSince(expected)) < 30)

        let during = try await harness.run("receive", H.webhookEvent(Self.customerMessage("m_api_1")))
        #expect(during.bodyJSON?["paused"] as? Int == 1)
        #expect(await harness.graph.messages.isEmpty)

        // Anyone may look without changing anything: paused by the API until then, and the
        // customer's message of a moment ago opened the window.
        for _ in 0..<2 {
            let status = try await control("status")
            #expect(status.exitCode == 0, "\(status.stderr)")
            #expect(status.json?["paused"] as? Bool == true)
            #expect(status.json?["pausedBy"] as? String == "api")
            #expect(status.json?["pausedUntil"] as? String == until)
            #expect(status.json?["windowOpen"] as? Bool == true)
            #expect(status.json?["customerWroteAt"] is String)
        }

        // Through API Gateway, as a business's tool calls it.
        let gateway = try await harness.run(
            "send",
            Self.gatewayEvent(path: "/conversations/resume", body: #"{"businessId":"B0100001","platform":"instagram","customerId":"\#(Self.customer)"}"#))
        #expect(gateway.statusCode == 200, "\(gateway.stdout)")
        #expect(gateway.bodyJSON?["wasPaused"] as? Bool == true)
        let after = try await harness.run("receive", H.webhookEvent(Self.customerMessage("m_api_2")))
        #expect(after.bodyJSON?["answered"] as? Int == 1)
        let resumed = try await harness.run(
            "send",
            Self.gatewayEvent(path: "/conversations/status", body: #"{"businessId":"B0100001","platform":"instagram","customerId":"\#(Self.customer)"}"#))
        #expect(resumed.statusCode == 200, "\(resumed.stdout)")
        #expect(resumed.bodyJSON?["paused"] as? Bool == false)
        #expect(resumed.bodyJSON?["pausedBy"] == nil)
        let status = try await control("status", #","minutes":15"#)
        #expect(status.json?["errorType"] as? String == "InvalidInput")

        // Bad requests say what is wrong, and change nothing.
        let tooLong = try await control("pause", #","minutes":20000"#)
        #expect(tooLong.exitCode == 1)
        #expect(tooLong.json?["errorType"] as? String == "InvalidInput")
        let unknown = try await harness.run("send", Array(#"{"action":"freeze","businessId":"B0100001"}"#.utf8))
        #expect(unknown.json?["errorType"] as? String == "InvalidInput")
        let nobody = try await harness.run("send", Array(#"{"action":"pause","businessId":"B9","platform":"instagram","customerId":"1"}"#.utf8))
        #expect(nobody.json?["errorType"] as? String == "UnknownTenant")
        await harness.shutdown()
    }

    static func gatewayEvent(path: String, body: String) -> [UInt8] {
        let event: [String: Any] = [
            "version": "2.0", "rawPath": path, "rawQueryString": "", "headers": ["content-type": "application/json"],
            "requestContext": ["http": ["method": "POST", "path": path]], "body": body, "isBase64Encoded": false,
        ]
        return Array((try? JSONSerialization.data(withJSONObject: event)) ?? Data())
    }

    // MARK: Seen and typing

    @Test func senderActionsComeBeforeTheReplyOnEveryPlatform() async throws {
        let world = try await W.world()
        _ = try await W.deliver(world, Self.customerMessage("m_seen_ig"))
        _ = try await W.deliver(world, Self.customerMessage("m_seen_fb", platform: .messenger))
        _ = try await W.deliver(world, WhatsAppTests.whatsAppText(to: H.phoneNumberId, id: "wamid.SEEN1", text: "salut"))
        let posts = await world.harness.graph.calls.filter { $0.method == "POST" && $0.path.hasSuffix("/messages") }
        let shapes = posts.map { call -> String in
            if let action = call.body?["sender_action"] as? String { return "\(call.accountId) \(action)" }
            if call.body?["status"] as? String == "read" {
                let typing = (call.body?["typing_indicator"] as? [String: Any])?["type"] as? String
                return "\(call.accountId) read \(call.body?["message_id"] as? String ?? "") typing:\(typing ?? "none")"
            }
            return "\(call.accountId) message"
        }
        #expect(
            shapes == [
                "\(H.pageId) mark_seen", "\(H.pageId) typing_on", "\(H.pageId) message",
                "\(H.pageId) mark_seen", "\(H.pageId) typing_on", "\(H.pageId) message",
                "\(H.phoneNumberId) read wamid.SEEN1 typing:text", "\(H.phoneNumberId) message",
            ])
        #expect(posts.allSatisfy { $0.token == H.token })
        #expect((posts[0].body?["recipient"] as? [String: String])?["id"] == Self.customer)
        await world.harness.shutdown()
    }

    @Test func aFailingOrHangingSenderActionNeverHoldsTheReply() async throws {
        let world = try await W.world()
        await world.harness.graph.script(
            [GraphStandIn.error(status: 500, code: 2, message: "Service temporarily unavailable", type: "OAuthException", transient: true)],
            pathSuffix: "/messages", senderActions: true)
        let failed = try await W.deliver(world, Self.customerMessage("m_action_fails"))
        #expect(W.summary(failed)["answered"] as? Int == 1)
        #expect(await world.harness.graph.messages.count == 1)

        // An action Meta sits on for 5 s: the reply goes without waiting for it (past the budget).
        let hanging = ContinuousClock.now + .seconds(5)
        await world.harness.graph.script(
            [.json(200, #"{"recipient_id":"1234567890123456"}"#)], pathSuffix: "/messages", answerAt: hanging, senderActions: true)
        let response = try await world.receive.handle(W.webhook(Self.customerMessage("m_action_hangs")), context: world.context())
        #expect(ContinuousClock.now < hanging)
        #expect(W.summary(response)["answered"] as? Int == 1)
        #expect(await world.harness.graph.messages.count == 2)
        await world.harness.shutdown()
    }

    // MARK: Never cut a reply

    static let longReply: String = {
        // 4,500 characters (and bytes: Instagram counts bytes) in paragraphs of sentences.
        var text = ""
        var sentence = 0
        while text.count < 4500 {
            sentence += 1
            text += "Sentence \(sentence) says something useful about the booking. "
            if sentence % 12 == 0 { text += "\n\n" }
        }
        return String(text.prefix(4500))
    }()

    @Test(arguments: Platform.allCases)
    func aLongReplyArrivesAsOrderedPartsEachWithinItsLimit(_ platform: Platform) async throws {
        let world = try await W.world(agent: ScriptedAgent(AgentReply(text: Self.longReply)))
        let body: String =
            switch platform {
            case .whatsapp: WhatsAppTests.whatsAppText(to: H.phoneNumberId, id: "wamid.LONG1", text: "spune-mi tot")
            default: Self.customerMessage("m_long_\(platform.rawValue)", platform: platform)
            }
        #expect(W.summary(try await W.deliver(world, body))["answered"] as? Int == 1)
        let parts = await world.harness.graph.messages.compactMap(\.text)
        #expect(parts.count > 1)
        #expect(parts.count <= 5)
        for part in parts {
            switch platform {
            case .instagram: #expect(part.utf8.count <= 1000)
            case .messenger: #expect(part.count <= 2000)
            case .whatsapp: #expect(part.count <= 4096)
            }
            #expect(!part.hasSuffix(OutboundMessage.cutNotice))
        }
        // Nothing lost, nothing reordered, no word cut in two.
        func words(_ text: String) -> [Substring] { text.split(whereSeparator: \.isWhitespace) }
        #expect(parts.flatMap(words) == words(Self.longReply))
        #expect(parts.dropLast().allSatisfy { $0.hasSuffix(".") })
        await world.harness.shutdown()
    }

    @Test func splittingPrefersParagraphsThenSentencesThenWords() {
        let paragraph = String(repeating: "a", count: 1200) + "\n\n" + String(repeating: "b", count: 1200)
        #expect(OutboundMessage.parts(of: paragraph, for: .messenger) == [String(repeating: "a", count: 1200), String(repeating: "b", count: 1200)])
        let sentences = String(repeating: "Ce zi frumoasă. ", count: 200)  // 3,200 characters
        let messenger = OutboundMessage.parts(of: sentences, for: .messenger)
        #expect(messenger.count == 2)
        #expect(messenger.allSatisfy { $0.hasSuffix("frumoasă.") && $0.count <= 2000 })
        let words = String(repeating: "cuvânt ", count: 400)
        #expect(OutboundMessage.parts(of: words, for: .messenger).allSatisfy { $0.hasSuffix("cuvânt") })
        // No break at all: cut between characters, within the limit (Instagram counts bytes).
        let solid = String(repeating: "ă", count: 1500)
        let instagram = OutboundMessage.parts(of: solid, for: .instagram)
        #expect(instagram.joined() == solid)
        #expect(instagram.allSatisfy { $0.utf8.count <= 1000 })
        // Beyond five messages the last says the rest was cut.
        let huge = String(repeating: "Încă o propoziție lungă despre meniu. ", count: 400)
        let cut = OutboundMessage.parts(of: huge, for: .instagram)
        #expect(cut.count == 5)
        #expect(cut.last?.hasSuffix(OutboundMessage.cutNotice) == true)
        #expect(cut.allSatisfy { $0.utf8.count <= 1000 })
        // A hostile agent's single giant character (combining marks) cannot stall it.
        let zalgo = "a" + String(repeating: "\u{301}", count: 3000)
        let scalars = OutboundMessage.parts(of: zalgo, for: .instagram)
        #expect(!scalars.isEmpty && scalars.count <= 5)
        #expect(scalars.allSatisfy { $0.utf8.count <= 1000 })
        #expect(OutboundMessage.parts(of: "  \n ", for: .whatsapp).isEmpty)
    }

    @Test func sendSplitsOnlyWhenAsked() async throws {
        let world = try await W.world()
        func request(_ text: String, split: Bool) -> JSON {
            [
                "businessId": "B0100001", "platform": "messenger", "recipientId": "6543210987654321", "message": ["text": .string(text)],
                "split": .bool(split),
            ]
        }
        do {
            _ = try SendHandler.parse(request(Self.longReply, split: false))
            Issue.record("a text over the limit was accepted without split")
        } catch {
            #expect(error.errorType == "TextTooLong")
        }
        let sent = try await world.send.send(try SendHandler.parse(request(Self.longReply, split: true)), context: world.context())
        #expect(sent.count == 3)
        let texts = await world.harness.graph.messages.compactMap(\.text)
        #expect(texts.flatMap { $0.split(whereSeparator: \.isWhitespace) } == Self.longReply.split(whereSeparator: \.isWhitespace))
        let output = SendHandler.output(sent)
        #expect(output["messageIds"]?.array?.count == 3)
        #expect(output["messageId"]?.string == sent.first?.messageId)
        // More than five messages' worth is refused, not cut.
        do {
            _ = try SendHandler.parse(request(String(repeating: "Prea mult text aici. ", count: 700), split: true))
            Issue.record("a text over five messages was accepted")
        } catch {
            #expect(error.errorType == "TextTooLong")
        }
        await world.harness.shutdown()
    }

    // MARK: A burst is one turn; the agent knows who it talks to

    @Test func theAgentRequestCarriesTheConversationNameAndAttachments() async throws {
        let agent = ScriptedAgent(AgentReply(text: "Mulțumim!"))
        let world = try await W.world(agent: agent)
        await world.harness.graph.setProfile(of: "6543210987654321", ["first_name": "Ioana", "last_name": "Pop"])
        let sentAt = world.clock.nowMilliseconds
        let burst = H.messaging(
            object: "page", account: H.pageId,
            events: [
                H.textEvent(mid: "m_burst_1", text: "bună", sender: "6543210987654321", timestamp: sentAt + 1, recipient: H.pageId),
                #"{"sender":{"id":"6543210987654321"},"recipient":{"id":"\#(H.pageId)"},"timestamp":\#(sentAt + 2),"message":{"mid":"m_burst_2","attachments":[{"type":"image","payload":{"url":"https://cdn.example/masa.jpg"}}]}}"#,
                H.textEvent(mid: "m_burst_3", text: "pentru două persoane", sender: "6543210987654321", timestamp: sentAt + 3, recipient: H.pageId),
            ])
        let first = try await W.deliver(world, burst)
        #expect(W.summary(first)["answered"] as? Int == 3)
        #expect(await world.harness.graph.messages.count == 1)
        let request = try #require(agent.requests.first)
        #expect(agent.requests.count == 1)
        #expect(request.text == "bună\n[image: https://cdn.example/masa.jpg]\npentru două persoane")
        #expect(request.messageIds == ["m_burst_1", "m_burst_2", "m_burst_3"])
        #expect(request.messageId == "m_burst_3")
        #expect(request.customerName == "Ioana Pop")
        #expect(request.conversationId == "B0100001:L0100001:messenger:6543210987654321")
        #expect(request.attachments == [Attachment(type: "image", url: "https://cdn.example/masa.jpg")])
        for mid in ["m_burst_1", "m_burst_2", "m_burst_3"] {
            #expect(try await world.ledger.status(of: mid) == .answered)
            let again = try await W.deliver(
                world,
                H.messaging(object: "page", account: H.pageId, events: [H.textEvent(mid: mid, text: "x", sender: "6543210987654321", recipient: H.pageId)]))
            #expect(W.summary(again)["duplicates"] as? Int == 1)
        }

        // The name is kept for the conversation: Meta is not asked again.
        _ = try await W.deliver(
            world, Self.customerMessage("m_burst_4", platform: .messenger).replacingOccurrences(of: Self.customer, with: "6543210987654321"))
        #expect(agent.requests.last?.customerName == "Ioana Pop")
        let lookups = await world.harness.graph.calls.filter { $0.method == "GET" && $0.path.hasSuffix("/6543210987654321") }
        #expect(lookups.count == 1)
        #expect(lookups.first?.query["fields"] == "first_name,last_name")
        #expect(lookups.first?.token == H.token)

        // WhatsApp: the webhook's profile name, and the media id.
        let whatsapp =
            #"{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"field":"messages","value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"\#(H.phoneNumberId)"},"contacts":[{"profile":{"name":"Andrei Ionescu"},"wa_id":"16505551234"}],"messages":[{"from":"16505551234","id":"wamid.PHOTO1","timestamp":"\#(world.clock.now)","type":"image","image":{"caption":"meniul?","mime_type":"image/jpeg","sha256":"abc","id":"1479537139650973"}}]}}]}]}"#
        _ = try await W.deliver(world, whatsapp)
        let last = try #require(agent.requests.last)
        #expect(last.customerName == "Andrei Ionescu")
        #expect(last.attachments == [Attachment(type: "image", mediaId: "1479537139650973")])
        #expect(try await Self.state(world, .whatsapp, customer: "16505551234").customerName == "Andrei Ionescu")
        await world.harness.shutdown()
    }

    @Test func aSlowProfileLookupNeverHoldsTheReply() async throws {
        let agent = ScriptedAgent(AgentReply(text: "Bună!"))
        // A lookup cut at 0.5 s against an answer held 5 s: ten times apart.
        let world = try await W.world(agent: agent, senderActions: false, profileTimeout: .milliseconds(500))
        let slow = ContinuousClock.now + .seconds(5)
        await world.harness.graph.script([.json(200, #"{"name":"Prea Târziu","id":"1234567890123456"}"#)], pathSuffix: "/\(Self.customer)", answerAt: slow)
        let response = try await world.receive.handle(W.webhook(Self.customerMessage("m_profile_slow")), context: world.context())
        #expect(ContinuousClock.now < slow)
        #expect(W.summary(response)["answered"] as? Int == 1)
        #expect(agent.requests.first?.customerName == nil)
        await world.harness.shutdown()
    }
}

extension GraphStandIn.Sent {
    /// The text of a sent message (Messenger and Instagram `message.text`, WhatsApp `text.body`).
    var text: String? {
        (body?["message"] as? [String: Any])?["text"] as? String ?? (body?["text"] as? [String: Any])?["body"] as? String
    }
}

extension HandlerRulesTests.World {
    func store(of messageId: String) async throws -> Item? {
        try await harness.store.get(harness.tables.processedMessages, key: ["messageId": .s(messageId)])
    }
}

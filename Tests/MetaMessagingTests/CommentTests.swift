import Essentials
import Foundation
import FunctionRuntime
import KeyValueStore
import Logging
import MetaAgents
import MetaGraph
import MetaMessaging
import MetaTelemetry
import MetaTenancy
import MetaWebhooks
import NIOHTTPTransport
import TestSupport
import Testing

/// Comments become conversations (issue 34), in process against the Graph stand-in with
/// Meta's comment webhooks and its answers to private and public replies.
@Suite struct CommentTests {
    typealias H = FunctionHarness
    typealias W = HandlerRulesTests
    typealias T = TakeoverTests

    static let commenter = "1234567890123456"
    static let media = "17895695668004550"

    /// Instagram's `comments` (or `live_comments`) change, as Meta sends it (Instagram
    /// Platform "Webhook Notification Examples": `from.id`, `from.username`, `media.id`,
    /// `media.media_product_type`, `id`, `text`, `parent_id` for a reply in a thread).
    static func instagramComment(
        _ id: String, text: String, from: String = commenter, at time: Int64, field: String = "comments", parent: String? = nil
    ) -> String {
        let parentField = parent.map { #","parent_id":"\#($0)""# } ?? ""
        return
            #"{"object":"instagram","entry":[{"id":"\#(H.instagramId)","time":\#(time),"changes":[{"field":"\#(field)","value":{"#
            + #""from":{"id":"\#(from)","username":"ana.pop"},"media":{"id":"\#(media)","media_product_type":"REELS"},"id":"\#(id)","text":"\#(text)"\#(parentField)}}]}]}"#
    }

    /// A Page's `feed` change for a comment (`item` `comment`, `verb` `add`, `edited`, `remove`).
    static func pageComment(
        _ id: String, text: String, from: String = commenter, createdAt: Int64, verb: String = "add", item: String = "comment"
    )
        -> String
    {
        #"{"object":"page","entry":[{"id":"\#(H.pageId)","time":\#(createdAt),"changes":[{"field":"feed","value":{"#
            + #""from":{"id":"\#(from)","name":"Ana Pop"},"post_id":"\#(H.pageId)_5550001","comment_id":"\#(id)","parent_id":"\#(H.pageId)_5550001","#
            + #""created_time":\#(createdAt),"item":"\#(item)","verb":"\#(verb)","message":"\#(text)"}}]}]}"#
    }

    struct Setup {
        let world: W.World
        let agent: T.ScriptedAgent
        let book: CommentBook
    }

    static func setup(
        _ backend: StoreBackend = .file, replies: LocationSettings.CommentReplies? = .private,
        answer: AgentReply = AgentReply(text: "Bună! Vă trimit lista de prețuri aici.", publicReply: "V-am scris în privat!")
    ) async throws -> Setup {
        let agent = T.ScriptedAgent(answer)
        let world = try await W.world(backend: backend, agent: agent)
        let clock = world.clock
        let book = await world.harness.graph.installComments(now: { clock.now })
        book.allow(token: H.token, accounts: [H.pageId])
        if let replies { #expect(try await world.directory.setSettings(LocationSettings(commentReplies: replies), of: H.tenant)) }
        return Setup(world: world, agent: agent, book: book)
    }

    static func privateReplyBodies(_ world: W.World) async -> [[String: Any]] {
        await world.harness.graph.messages.compactMap { sent in
            let body = (try? JSONSerialization.jsonObject(with: Data(sent.rawBody))) as? [String: Any]
            return (body?["recipient"] as? [String: Any])?["comment_id"] != nil ? body : nil
        }
    }

    @Test(arguments: StoreBackend.allCases)
    func anInstagramCommentIsAnsweredByOnePrivateReply(_ backend: StoreBackend) async throws {
        let setup = try await Self.setup(backend)
        let world = setup.world
        setup.book.add("17858893269000001", by: Self.commenter, on: H.pageId, at: world.clock.now)
        let response = try await W.deliver(world, Self.instagramComment("17858893269000001", text: "PREȚ", at: world.clock.now))
        #expect(W.summary(response)["answered"] as? Int == 1)

        // The agent's turn of its own kind.
        let asked = try #require(setup.agent.requests.first)
        #expect(asked.kind == "comment")
        #expect(asked.comment == Comment(id: "17858893269000001", text: "PREȚ", mediaId: Self.media, mediaType: "REELS", username: "ana.pop"))
        #expect(asked.conversationId == "B0100001:L0100001:instagram:\(Self.commenter)")
        #expect(asked.customerName == "ana.pop")

        // The private reply: addressed by the comment's id, on the Page's Send API, no
        // messaging type (it goes outside any window); no public reply (`private` only).
        let bodies = await Self.privateReplyBodies(world)
        #expect(bodies.count == 1)
        #expect((bodies.first?["message"] as? [String: Any])?["text"] as? String == "Bună! Vă trimit lista de prețuri aici.")
        #expect(bodies.first?["messaging_type"] == nil)
        #expect(setup.book.privateReplies["17858893269000001"] != nil)
        #expect(setup.book.publicReplies.isEmpty)
        #expect(try await world.ledger.status(of: "17858893269000001") == .answered)
        // No typing (there is no thread yet), and no service window opened by a comment.
        #expect(await world.harness.graph.senderActions.isEmpty)

        // Redelivered: a duplicate, never a second reply.
        let again = try await W.deliver(world, Self.instagramComment("17858893269000001", text: "PREȚ", at: world.clock.now))
        #expect(W.summary(again)["duplicates"] as? Int == 1)
        #expect(await Self.privateReplyBodies(world).count == 1)
        #expect(setup.agent.requests.count == 1)
        await world.harness.shutdown()
    }

    @Test func twoDeliveriesOfOneCommentAtOnceAnswerItOnce() async throws {
        let setup = try await Self.setup(.file)
        let world = setup.world
        setup.book.add("17858893269000002", by: Self.commenter, on: H.pageId, at: world.clock.now)
        let body = Self.instagramComment("17858893269000002", text: "cât costă?", at: world.clock.now)
        async let first = W.deliver(world, body)
        async let second = W.deliver(world, body)
        _ = try await (first, second)
        #expect(setup.book.privateReplies.count == 1)
        #expect(await Self.privateReplyBodies(world).count == 1)
        #expect(setup.agent.requests.count == 1)
        await world.harness.shutdown()
    }

    @Test func offByDefaultAndOnlyWhereTheLocationOptsIn() async throws {
        let setup = try await Self.setup(.file, replies: nil)
        let world = setup.world
        setup.book.add("17858893269000003", by: Self.commenter, on: H.pageId, at: world.clock.now)
        let response = try await W.deliver(world, Self.instagramComment("17858893269000003", text: "PREȚ", at: world.clock.now))
        #expect(W.summary(response)["skipped"] as? Int == 1)
        #expect(setup.agent.requests.isEmpty)
        #expect(await world.harness.graph.messages.isEmpty)
        #expect(try await world.ledger.status(of: "17858893269000003") == nil)

        // Opted in with public replies: both go, the public one under the comment.
        #expect(try await world.directory.setSettings(LocationSettings(commentReplies: .privateAndPublic), of: H.tenant))
        _ = try await W.deliver(world, Self.instagramComment("17858893269000003", text: "PREȚ", at: world.clock.now))
        #expect(setup.book.privateReplies["17858893269000003"] != nil)
        #expect(setup.book.publicReplies.map(\.commentId) == ["17858893269000003"])
        #expect(setup.book.publicReplies.first?.text == "V-am scris în privat!")
        let publicCalls = await world.harness.graph.calls.filter { $0.path.hasSuffix("/17858893269000003/replies") }
        #expect(publicCalls.count == 1)

        // Our public reply comes back as a comment webhook: recognised by its id, not answered
        // (whoever Meta names as its author), so no reply ever answers a reply of ours.
        let ours = try #require(setup.book.publicReplies.first?.id)
        let loop = try await W.deliver(world, Self.instagramComment(ours, text: "V-am scris în privat!", from: "9999", at: world.clock.now))
        #expect(W.summary(loop)["skipped"] as? Int == 1)
        // And a comment by the business's own account is not answered either.
        let own = try await W.deliver(world, Self.instagramComment("17858893269000099", text: "Mulțumim!", from: H.instagramId, at: world.clock.now))
        #expect(W.summary(own)["skipped"] as? Int == 1)
        #expect(setup.agent.requests.count == 1)
        await world.harness.shutdown()
    }

    @Test(arguments: StoreBackend.allCases)
    func aFacebookCommentIsAnsweredAndItsEditsAreNot(_ backend: StoreBackend) async throws {
        let setup = try await Self.setup(backend, replies: .privateAndPublic)
        let world = setup.world
        let id = "\(H.pageId)_5550001_7770001"
        setup.book.add(id, by: Self.commenter, on: H.pageId, at: world.clock.now - 60)
        let response = try await W.deliver(world, Self.pageComment(id, text: "Aveți program sâmbăta?", createdAt: world.clock.now - 60))
        #expect(W.summary(response)["answered"] as? Int == 1)
        #expect(setup.agent.requests.first?.comment?.mediaType == "post")
        #expect(setup.agent.requests.first?.platform == "messenger")
        #expect(setup.book.privateReplies[id] != nil)
        // Facebook's public reply is a comment on the comment.
        let publicCalls = await world.harness.graph.calls.filter { $0.path.hasSuffix("/\(id)/comments") && $0.method == "POST" }
        #expect(publicCalls.count == 1)

        for verb in ["edited", "remove"] {
            let change = try await W.deliver(world, Self.pageComment(id, text: "edited", createdAt: world.clock.now, verb: verb))
            #expect(W.summary(change)["skipped"] as? Int == 1)
        }
        let like = try await W.deliver(world, Self.pageComment("x", text: "", createdAt: world.clock.now, item: "reaction"))
        #expect(W.summary(like)["skipped"] as? Int == 1)
        #expect(setup.agent.requests.count == 1)
        await world.harness.shutdown()
    }

    @Test func aCommentOlderThanSevenDaysIsNotAnsweredAndMetasRefusalsAreNamed() async throws {
        let setup = try await Self.setup(.file)
        let world = setup.world
        // Older than Meta allows: skipped before the agent or Graph.
        let old = world.clock.now - 8 * 24 * 3600
        let skipped = try await W.deliver(world, Self.pageComment("\(H.pageId)_1_old", text: "?", createdAt: old))
        #expect(W.summary(skipped)["skipped"] as? Int == 1)
        #expect(setup.agent.requests.isEmpty)

        // Meta's own answers: each recorded under its name, never retried.
        setup.book.add("c_answered", by: Self.commenter, on: H.pageId, at: world.clock.now)
        setup.book.markReplied("c_answered")
        setup.book.add("c_too_old", by: Self.commenter, on: H.pageId, at: old)
        let cases = [("c_answered", "CommentAlreadyAnswered"), ("c_too_old", "CommentNotAnswerable"), ("c_deleted", "CommentGone")]
        for (id, name) in cases {
            let response = try await W.deliver(world, Self.instagramComment(id, text: "?", at: world.clock.now))
            #expect(response.status == 200, "\(id)")
            #expect(W.summary(response)["failed"] as? Int == 1, "\(id)")
            #expect(try await world.ledger.status(of: id) == .failed, "\(id)")
            let calls = await Self.privateReplyBodies(world).filter { ($0["recipient"] as? [String: Any])?["comment_id"] as? String == id }
            #expect(calls.count == 1, "\(id): tried once, not retried")
            let detail = try await world.harness.store.get(world.harness.tables.processedMessages, key: ["messageId": .s(id)])?["detail"]?.string
            #expect(detail?.contains(name) == true, "\(id): \(detail ?? "no detail")")
        }
        await world.harness.shutdown()
    }

    @Test func theCustomersAnswerToThePrivateReplyIsTheSameConversation() async throws {
        let setup = try await Self.setup(.file)
        let world = setup.world
        setup.book.add("17858893269000004", by: Self.commenter, on: H.pageId, at: world.clock.now)
        _ = try await W.deliver(world, Self.instagramComment("17858893269000004", text: "PREȚ", at: world.clock.now))
        // The echo of our private reply in the customer's thread is ours: nothing paused.
        let replyId = "m_PRIVATE1"  // the stand-in's id for its first private reply
        #expect(try await world.ledger.wasSent(replyId))
        _ = try await W.deliver(world, T.echo(mid: replyId))
        #expect(try await T.state(world).pausedUntil == nil)

        // The customer answers in the thread: a message turn of the same conversation.
        _ = try await W.deliver(world, T.customerMessage("m_after_comment", "da, vă rog"))
        let turn = try #require(setup.agent.requests.last)
        #expect(turn.kind == "message")
        #expect(turn.conversationId == setup.agent.requests.first?.conversationId)
        #expect(await world.harness.graph.messages.compactMap(LocationSettingsTests.sentText).count == 2)
        await world.harness.shutdown()
    }

    @Test func aLiveCommentAndAReplyInAThreadCarryWhatTheyAre() async throws {
        let setup = try await Self.setup(.file)
        let world = setup.world
        setup.book.add("c_live", by: Self.commenter, on: H.pageId, at: world.clock.now)
        _ = try await W.deliver(world, Self.instagramComment("c_live", text: "salut", at: world.clock.now, field: "live_comments", parent: "c_parent"))
        let comment = try #require(setup.agent.requests.first?.comment)
        #expect(comment.mediaType == "live")
        #expect(comment.parentId == "c_parent")
        await world.harness.shutdown()
    }

    /// `send` can answer a comment privately too (a person, a CRM), once.
    @Test func sendAnswersACommentByItsId() async throws {
        let setup = try await Self.setup(.file)
        let world = setup.world
        setup.book.add("c_send", by: Self.commenter, on: H.pageId, at: world.clock.now)
        let input: JSON = [
            "businessId": "B0100001", "platform": "instagram", "recipientCommentId": "c_send", "message": ["text": "Vă scriem noi."],
        ]
        let sent = try await world.send.send(try SendHandler.parse(input), context: world.context())
        #expect(sent.first?.recipientId == Self.commenter)
        #expect(setup.book.privateReplies["c_send"] == "Vă scriem noi.")
        do {
            _ = try await world.send.send(try SendHandler.parse(input), context: world.context())
            Issue.record("a second private reply went")
        } catch {
            #expect(error.errorType == "CommentAlreadyAnswered")
            #expect(error.status == 409)
        }
        let both: JSON = ["businessId": "B0100001", "platform": "instagram", "recipientId": "1", "recipientCommentId": "c", "message": ["text": "x"]]
        #expect(throws: SendError.self) { try SendHandler.parse(both) }
        await world.harness.shutdown()
    }

    /// An Instagram-Login connection answers on `graph.instagram.com`: its own account's
    /// `/messages`, with its own token.
    @Test func instagramLoginPrivateRepliesGoToTheAccountsOwnHost() async throws {
        let setup = try await Self.setup(.file)
        let world = setup.world
        await world.harness.graph.allowInstagram(token: "IGAA-comment-token", account: "17841499999999999")
        setup.book.allow(token: "IGAA-comment-token", accounts: ["17841499999999999"])
        setup.book.add("c_iglogin", by: Self.commenter, on: "17841499999999999", at: world.clock.now)
        var credentials = TenantCredentials(businessId: "B0100001", accessToken: "IGAA-comment-token", instagramAccountId: "17841499999999999")
        credentials.usesInstagramLogin = true
        let instagram = GraphClient(
            transport: NIOHTTPTransport(), baseURL: world.harness.graph.baseURL, appSecret: "", sendsAppSecretProof: false)
        let sender = MessageSender(
            graph: GraphClient(transport: NIOHTTPTransport(), baseURL: world.harness.graph.baseURL, appSecret: H.appSecret), instagramGraph: instagram)
        let sent = try await sender.send(
            OutboundMessage(text: "Salut!"), platform: .instagram, recipientId: "c_iglogin", credentials: credentials, deadline: .now + .seconds(5),
            toComment: true, logger: Logger(label: "test"))
        #expect(sent.recipientId == Self.commenter)
        let call = try #require(await world.harness.graph.calls.last)
        #expect(call.path.hasSuffix("/17841499999999999/messages"))
        #expect(call.token == "IGAA-comment-token")
        let id = try await sender.publicReply(
            "Mulțumim!", to: "c_iglogin", platform: .instagram, credentials: credentials, deadline: .now + .seconds(5), logger: Logger(label: "test"))
        #expect(setup.book.publicReplies.last?.id == id)
        await world.harness.shutdown()
    }

    /// Meta's 750 private replies an hour per account, counted across executions: over it, a
    /// comment waits for the next hour (no call Meta would refuse), then is answered.
    @Test func privateRepliesKeepToMetasHourlyLimit() async throws {
        let agent = T.ScriptedAgent(AgentReply(text: "Vă scriu acum."))
        let world = try await W.world(agent: agent)
        #expect(try await world.directory.setSettings(LocationSettings(commentReplies: .private), of: H.tenant))
        let clock = world.clock
        let book = await world.harness.graph.installComments(now: { clock.now })
        book.allow(token: H.token, accounts: [H.pageId])
        var receive = world.receive
        receive.responder.privateReplies = PrivateReplyBudget(
            store: world.harness.store, table: world.harness.tables.processedMessages, perHour: 2, clock: clock.clock)
        func deliver(_ id: String) async throws -> HTTPResponse {
            let context = world.context()
            let response = try await receive.handle(W.webhook(Self.instagramComment(id, text: "?", at: clock.now)), context: context)
            await context.afterResponse.run(before: .now + .seconds(5))
            return response
        }
        // At the start of an hour, so the next one is a known wait away.
        clock.advance(3600 - clock.now % 3600)
        for id in ["c_budget_1", "c_budget_2", "c_budget_3"] { book.add(id, by: Self.commenter, on: H.pageId, at: clock.now) }
        _ = try await deliver("c_budget_1")
        _ = try await deliver("c_budget_2")
        let third = try await deliver("c_budget_3")
        #expect(W.summary(third)["throttled"] as? Int == 1)
        #expect(book.privateReplies.count == 2)
        #expect(try await world.ledger.status(of: "c_budget_3") != .answered)

        // Meta redelivers it; within the hour it still waits, in the next it is answered.
        _ = try await deliver("c_budget_3")
        #expect(book.privateReplies.count == 2)
        clock.advance(3600)
        _ = try await deliver("c_budget_3")
        #expect(book.privateReplies["c_budget_3"] == "Vă scriu acum.")
        await world.harness.shutdown()
    }

    /// The connection status says what a location that answers comments still needs from Meta.
    @Test func theStatusNamesWhatCommentsStillNeed() async throws {
        let setup = try await Self.setup(.file, replies: .privateAndPublic)
        let world = setup.world
        await world.harness.graph.subscribe(page: H.pageId, fields: ["messages", "message_echoes"])
        var (_, byLocation) = try await ConnectionStatusTests.status(world, businessId: "B0100001")
        var comments = try #require(byLocation.values.first?["comments"] as? [String: Any])
        #expect(comments["replies"] as? String == "private_and_public")
        #expect(comments["missingScopes"] as? [String] == ["pages_read_engagement", "instagram_manage_comments", "pages_manage_engagement"])
        #expect(comments["feedSubscribed"] as? Bool == false)
        #expect((byLocation.values.first?["problem"] as? String)?.contains("pages_read_engagement") == true)

        // Connected again with the permissions and the feed subscription: nothing missing.
        await world.harness.graph.describe(
            token: H.token, TokenInfo(scopes: TokenInfo.messagingScopes + ["pages_read_engagement", "instagram_manage_comments", "pages_manage_engagement"]))
        await world.harness.graph.subscribe(page: H.pageId, fields: ["messages", "message_echoes", "feed"])
        (_, byLocation) = try await ConnectionStatusTests.status(world, businessId: "B0100001")
        comments = try #require(byLocation.values.first?["comments"] as? [String: Any])
        #expect(comments["missingScopes"] as? [String] == [])
        #expect(comments["feedSubscribed"] as? Bool == true)
        #expect(byLocation.values.first?["problem"] == nil || byLocation.values.first?["problem"] is NSNull)

        // A location that does not answer comments is not asked for any of it.
        #expect(try await world.directory.setSettings(LocationSettings(commentReplies: .off), of: H.tenant))
        (_, byLocation) = try await ConnectionStatusTests.status(world, businessId: "B0100001")
        #expect(byLocation.values.first?["comments"] == nil)
        await world.harness.shutdown()
    }

    @Test func commentsHaveMetricsOfTheirOwn() throws {
        let events = [ConversationEvent.Kind.commentAccepted, .commentReplied, .commentSkipped, .commentSkipped].map {
            ConversationEvent($0, businessId: "B0100001", locationId: "L0100001", platform: .instagram)
        }
        let document = try #require(Metrics(namespace: "MetaMessaging").documents(for: events, function: "process", now: 0).first)
        #expect(document["CommentsAccepted"] == 1)
        #expect(document["CommentsReplied"] == 1)
        #expect(document["CommentsSkipped"] == 2)
        #expect(document["Answered"] == 0)
    }

    @Test func aQueuedCommentKeepsWhatItIs() throws {
        let message = InboundMessage(
            platform: .instagram, messageId: "c_q", accountId: H.instagramId, senderId: Self.commenter, timestamp: 1,
            content: .comment(Comment(id: "c_q", text: "hei", mediaId: Self.media, mediaType: "FEED", parentId: "p", username: "ana")))
        let accepted = AcceptedMessage(tenant: H.tenant, message: message, acceptedAt: 7)
        let decoded = try SafeJSON.decode(AcceptedMessage.self, from: try JSONNodeEncoder.encode(accepted))
        #expect(decoded == accepted)
    }
}

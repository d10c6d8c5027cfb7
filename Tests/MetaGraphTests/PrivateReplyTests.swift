import Logging
import MetaGraph
import MetaWebhooks
import NIOHTTPTransport
import TestSupport
import Testing

/// The Graph client alone, acting for a connection of the test's own (no tenancy): a comment's
/// private reply goes as Meta documents it, once, and each of Meta's refusals for the comment
/// itself comes back as an outcome of its own name, never retried.
@Suite struct PrivateReplyTests {
    /// A connection as the Graph client sees it: a Page and its token.
    struct Page: GraphConnection {
        let businessId = "B0100001"
        let isActive = true
        let inactiveReason: String? = nil
        let usesInstagramLogin = false
        func sendingAccount(for platform: Platform) -> String? { platform == .whatsapp ? nil : "102030405060708" }
        func token(for platform: Platform) -> String? { platform == .whatsapp ? nil : "page-token" }
    }

    static let commenter = "6543210987654321"

    @Test func aCommentsPrivateReplyIsSentOnceAndMetasRefusalsAreNamed() async throws {
        let clock = TestClock()
        let standIn = try await GraphStandIn(appSecret: "app-secret")
        let book = await standIn.installComments(now: { clock.now })
        book.allow(token: "page-token", accounts: ["102030405060708"])
        let sender = MessageSender(
            graph: GraphClient(transport: NIOHTTPTransport(), baseURL: standIn.baseURL, appSecret: "app-secret"), clock: clock.clock)
        let logger = Logger(label: "private-reply-test")
        func reply(to comment: String) async throws(SendError) -> SentMessage {
            try await sender.send(
                OutboundMessage(text: "Vă scriu acum."), platform: .messenger, recipientId: comment, credentials: Page(),
                deadline: clock.clock.instant() + .seconds(20), toComment: true, logger: logger)
        }

        book.add("102030405060708_1_2", by: Self.commenter, on: "102030405060708", at: clock.now)
        let sent = try await reply(to: "102030405060708_1_2")
        #expect(sent.recipientId == Self.commenter)
        let body = try #require(await standIn.messages.last?.body)
        #expect((body["recipient"] as? [String: Any])?["comment_id"] as? String == "102030405060708_1_2")
        #expect((body["message"] as? [String: Any])?["text"] as? String == "Vă scriu acum.")

        book.add("102030405060708_1_old", by: Self.commenter, on: "102030405060708", at: clock.now - 8 * 24 * 3600)
        let cases: [(String, (SendError) -> Bool)] = [
            ("102030405060708_1_2", { if case .commentAlreadyAnswered = $0 { true } else { false } }),
            ("102030405060708_1_old", { if case .commentNotAnswerable = $0 { true } else { false } }),
            ("102030405060708_1_gone", { if case .commentGone = $0 { true } else { false } }),
        ]
        for (comment, isExpected) in cases {
            let before = await standIn.messages.count
            do {
                _ = try await reply(to: comment)
                Issue.record("\(comment): Meta's refusal was taken for a reply")
            } catch {
                #expect(isExpected(error), "\(comment): \(error)")
                #expect(error.transientGraphError == nil, "\(comment): not worth trying again")
            }
            #expect(await standIn.messages.count == before + 1, "\(comment): one call, not retried")
        }
        // A WhatsApp number has no comments to reply to: refused before any call.
        let calls = await standIn.messages.count
        do {
            _ = try await sender.send(
                OutboundMessage(text: "x"), platform: .whatsapp, recipientId: "c", credentials: Page(), deadline: clock.clock.instant() + .seconds(5),
                toComment: true, logger: logger)
            Issue.record("a private reply on WhatsApp was sent")
        } catch {
            #expect(error == .invalidInput("a private reply to a comment goes on Instagram or Messenger only"))
        }
        #expect(await standIn.messages.count == calls)
        await standIn.shutdown()
    }
}

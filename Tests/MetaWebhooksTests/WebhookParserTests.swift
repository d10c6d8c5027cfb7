import Foundation
import MetaWebhooks
import TestSupport
import Testing

/// What Meta sends, read by the webhooks module alone: the samples of `events/` (Meta's
/// documented shapes) typed at the edge, the comment rules that need no store (our own
/// account's comment, an edit, a feed item that is not a comment), and the signature.
@Suite struct WebhookParserTests {
    static let instagramAccount = "17841400000000001"
    static let page = "102030405060708"

    /// The webhook body of a sample event.
    static func body(_ sample: String) throws -> [UInt8] {
        let event = try #require(try JSONSerialization.jsonObject(with: Data(Executables.event(sample))) as? [String: Any])
        return Array(try #require(event["body"] as? String).utf8)
    }

    static func parse(_ text: String) throws -> [WebhookEvent] {
        try WebhookParser.parse(Array(text.utf8)).events
    }

    @Test func theSamplesAreTypedAsTheyAre() throws {
        let text = try WebhookParser.parse(Self.body("instagram-text.json"))
        #expect(text.object == "instagram")
        guard case .message(let message) = text.events.first else { Issue.record("not a message: \(text.events)"); return }
        #expect(message.platform == .instagram && message.accountId == Self.instagramAccount && message.senderId == "1234567890123456")
        #expect(message.content == .text("Bună ziua! Aveți loc mâine la 10?"))

        let comment = try WebhookParser.parse(Self.body("instagram-comment.json")).events
        #expect(
            comment == [
                .message(
                    InboundMessage(
                        platform: .instagram, messageId: "17858893269000001", accountId: Self.instagramAccount, senderId: "1234567890123456",
                        timestamp: 1_795_687_290_000,
                        content: .comment(Comment(id: "17858893269000001", text: "PREȚ", mediaId: "17895695668004550", mediaType: "REELS", username: "ana.pop"))
                    ))
            ])

        // A Page's comment: dated by its created_time; a top-level comment has no parent.
        let pageComment = try WebhookParser.parse(Self.body("page-comment.json")).events
        #expect(
            pageComment == [
                .message(
                    InboundMessage(
                        platform: .messenger, messageId: "102030405060708_5550001_7770001", accountId: Self.page, senderId: "6543210987654321",
                        timestamp: 1_795_687_300_000,
                        content: .comment(
                            Comment(
                                id: "102030405060708_5550001_7770001", text: "Aveți program sâmbăta?", mediaId: "102030405060708_5550001",
                                mediaType: "post", username: "Ana Pop"))))
            ])

        guard case .delivery = try WebhookParser.parse(Self.body("whatsapp-status.json")).events.first else {
            Issue.record("a WhatsApp status is not a delivery")
            return
        }
        guard case .echo = try WebhookParser.parse(Self.body("instagram-echo.json")).events.first else {
            Issue.record("an echo is not an echo")
            return
        }
    }

    @Test func commentsThatAreNotToBeAnsweredAreSaidSo() throws {
        // The account's own comment (our public reply coming back, or the owner's): no loop.
        let own = try Self.parse(
            #"{"object":"instagram","entry":[{"id":"\#(Self.instagramAccount)","time":1795687290,"changes":[{"field":"comments","value":{"from":{"id":"\#(Self.instagramAccount)","username":"salon"},"id":"1785","text":"Mulțumim!"}}]}]}"#
        )
        #expect(own == [.skipped(.ownComment, accountId: Self.instagramAccount, timestamp: 1_795_687_290_000)])

        // A Page's comment edited or removed: acknowledged, not answered, still the customer's.
        let edited = try Self.parse(
            #"{"object":"page","entry":[{"id":"\#(Self.page)","time":1795687300,"changes":[{"field":"feed","value":{"from":{"id":"654","name":"Ana"},"post_id":"\#(Self.page)_1","comment_id":"\#(Self.page)_1_2","created_time":1795687300,"item":"comment","verb":"edited","message":"x"}}]}]}"#
        )
        #expect(edited == [.skipped(.commentChange, accountId: Self.page, customerId: "654", timestamp: 1_795_687_300_000)])

        // A feed item that is not a comment (a like, a post): nothing to answer.
        let liked = try Self.parse(
            #"{"object":"page","entry":[{"id":"\#(Self.page)","time":1795687300,"changes":[{"field":"feed","value":{"from":{"id":"654"},"item":"reaction","verb":"add"}}]}]}"#
        )
        #expect(liked == [.skipped(.other, accountId: Self.page, timestamp: 1_795_687_300_000)])

        // A comment without its id cannot be answered, and says why.
        let broken = try Self.parse(
            #"{"object":"instagram","entry":[{"id":"\#(Self.instagramAccount)","time":1,"changes":[{"field":"comments","value":{"from":{"id":"1"},"text":"?"}}]}]}"#
        )
        #expect(broken == [.invalid("a comment has no id or no from.id")])
    }

    @Test func aBodyThatIsNotAWebhookIsAFailure() {
        func failure(_ text: String) -> String? {
            do {
                _ = try WebhookParser.parse(Array(text.utf8))
                return nil
            } catch {
                return error.message
            }
        }
        #expect(failure("{") == "the body is not valid JSON")
        #expect(failure(#"{"entry":[]}"#) == "the body has no \"object\" field")
        #expect(failure(#"{"object":"page"}"#) == "the body has no \"entry\" array")
    }

    @Test func theSignatureIsMetasOverTheExactBytes() throws {
        let body = try Self.body("instagram-comment.json")
        let signature = WebhookSignature(appSecret: "local-app-secret")
        let header = signature.header(for: body)
        #expect(signature.check(body: body, header: header) == nil)
        #expect(signature.check(body: body + [0x20], header: header) == .mismatch)
        #expect(signature.check(body: body, header: nil) == .missing)
        #expect(signature.check(body: body, header: "sha1=abc") == .malformed)
        // The Instagram app's secret signs Instagram Login's webhooks: accepted beside the app's.
        let instagram = WebhookSignature(appSecret: "instagram-app-secret").header(for: body)
        #expect(WebhookSignature(appSecret: "local-app-secret", otherSecrets: ["instagram-app-secret"]).check(body: body, header: instagram) == nil)
        #expect(signature.check(body: body, header: instagram) == .mismatch)
    }
}

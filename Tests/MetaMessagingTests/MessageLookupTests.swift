import Essentials
import Foundation
import FunctionRuntime
import KeyValueStore
import Logging
import MetaMessaging
import MetaTenancy
import MetaWebhooks
import TestSupport
import Testing

/// "My customer wrote at 14:02 and got nothing: why?" (issue 36): `GET
/// /external/meta/messages/{messageId}?businessId=` for every outcome the ledger records.
@Suite struct MessageLookupTests {
    typealias H = FunctionHarness
    typealias W = HandlerRulesTests

    /// A WhatsApp text to the demo number, and a status of a message it sent (Cloud API
    /// "Webhooks: messages", `value.messages[]` and `value.statuses[]`).
    static func whatsAppText(id: String, text: String) -> String {
        #"{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"field":"messages","value":{"messaging_product":"whatsapp","#
            + #""metadata":{"display_phone_number":"15550783881","phone_number_id":"\#(H.phoneNumberId)"},"contacts":[{"profile":{"name":"Ana"},"wa_id":"16505551234"}],"#
            + #""messages":[{"from":"16505551234","id":"\#(id)","timestamp":"\#(WallClock.epochSeconds())","type":"text","text":{"body":"\#(text)"}}]}}]}]}"#
    }

    static func whatsAppStatus(id: String, status: String, errorCode: Int, title: String) -> String {
        #"{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"field":"messages","value":{"messaging_product":"whatsapp","#
            + #""metadata":{"display_phone_number":"15550783881","phone_number_id":"\#(H.phoneNumberId)"},"statuses":[{"id":"\#(id)","status":"\#(status)","#
            + #""timestamp":"\#(WallClock.epochSeconds())","recipient_id":"16505551234","errors":[{"code":\#(errorCode),"title":"\#(title)"}]}]}}]}]}"#
    }

    static func lookup(_ world: W.World, _ id: String, businessId: String = "B0100001") async throws -> [String: Any] {
        let encoded = id.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? id
        let request = HTTPRequest(method: "GET", path: "/external/meta/messages/\(encoded)", query: ["businessId": [businessId]])
        let response = try await ConnectionStatusTests.handler(world).handle(request, logger: Logger(label: "test"))
        #expect(response.status == 200)
        #expect(!response.body.contains(H.token))
        return try #require(try JSONSerialization.jsonObject(with: Data(response.body.utf8)) as? [String: Any])
    }

    @Test(arguments: StoreBackend.allCases)
    func everyOutcomeIsToldInIdsAndReasons(_ backend: StoreBackend) async throws {
        let world = try await W.world(backend: backend)
        let ledger = world.ledger
        func claim(_ id: String, as status: MessageLedger.Status = .answering) async throws {
            #expect(try await ledger.claim(id, businessId: "B0100001", owner: "o-\(id)", as: status) == .claimed)
        }

        // Answered, with the reply's id and what WhatsApp said of its delivery.
        let whatsapp = Self.whatsAppText(id: "wamid.HBgLMTY1MDU1NTEyMzQVAgASGBQz+/=", text: "Aveți loc?")
        _ = try await W.deliver(world, whatsapp)
        let answered = try await Self.lookup(world, "wamid.HBgLMTY1MDU1NTEyMzQVAgASGBQz+/=")
        #expect(answered["outcome"] as? String == "answered")
        let replyId = try #require(answered["replyId"] as? String)
        _ = try await W.deliver(world, Self.whatsAppStatus(id: replyId, status: "failed", errorCode: 131026, title: "Message undeliverable"))
        let failedDelivery = try await Self.lookup(world, "wamid.HBgLMTY1MDU1NTEyMzQVAgASGBQz+/=")
        #expect(failedDelivery["deliveryStatus"] as? String == "failed")
        #expect((failedDelivery["deliveryError"] as? [String: Any])?["code"] as? Int == 131026)
        #expect((failedDelivery["explanation"] as? String)?.contains("could not deliver") == true)
        // The reply itself is known as ours.
        let ours = try await Self.lookup(world, replyId)
        #expect(ours["outcome"] as? String == "sent_by_us")
        #expect(ours["inReplyTo"] as? String == "wamid.HBgLMTY1MDU1NTEyMzQVAgASGBQz+/=")

        // Never seen, and another business's message told apart from nothing.
        #expect(try await Self.lookup(world, "m_nobody")["outcome"] as? String == "never_seen")
        #expect(try await Self.lookup(world, "wamid.HBgLMTY1MDU1NTEyMzQVAgASGBQz+/=", businessId: "B0999999")["outcome"] as? String == "never_seen")

        // Queued, deferred twice for the share.
        try await claim("m_queued", as: .queued)
        try await ledger.countDeferral("m_queued")
        try await ledger.countDeferral("m_queued")
        let queued = try await Self.lookup(world, "m_queued")
        #expect(queued["outcome"] as? String == "queued")
        #expect(queued["deferrals"] as? Int == 2)

        // Being answered; then its try stopped (the lease ran out): retried.
        try await claim("m_answering")
        #expect(try await Self.lookup(world, "m_answering")["outcome"] as? String == "answering")
        try await ledger.release("m_answering", owner: "o-m_answering")
        #expect(try await Self.lookup(world, "m_answering")["outcome"] as? String == "retrying")

        // On its way to Meta.
        try await claim("m_sending")
        _ = try await ledger.markSending([("m_sending", "o-m_sending")])
        #expect(try await Self.lookup(world, "m_sending")["outcome"] as? String == "sending")

        // The final outcomes, each with its reason.
        let finals: [(String, MessageLedger.Status, String?, String)] = [
            ("m_no_reply", .answered, "no reply", "no_reply"), ("m_handed", .answered, "handed over", "handed_over"),
            ("m_unconfirmed", .unconfirmed, "a reply may have been sent (timeout): not sent again", "unconfirmed"),
            ("m_paused", .paused, "paused (human until 2026-12-06T15:00:00Z)", "paused"),
            ("m_failed", .failed, "GraphAPIError: Graph API error code 551 HTTP 400", "failed"),
        ]
        for (id, status, detail, outcome) in finals {
            try await claim(id)
            _ = try await ledger.finish(id, owner: "o-\(id)", status: status, detail: detail)
            let told = try await Self.lookup(world, id)
            #expect(told["outcome"] as? String == outcome, "\(id)")
            #expect(told["detail"] as? String == detail, "\(id)")
            #expect((told["explanation"] as? String)?.isEmpty == false)
        }
        await world.harness.shutdown()
    }

    @Test func aBadIdOrBusinessIsAClearError() async throws {
        let world = try await W.world()
        let handler = ConnectionStatusTests.handler(world)
        for (path, query) in [("/external/meta/messages/", ["businessId": ["B0100001"]]), ("/external/meta/messages/m_1", [:])] {
            do {
                _ = try await handler.handle(HTTPRequest(method: "GET", path: path, query: query), logger: Logger(label: "test"))
                Issue.record("\(path) was answered")
            } catch {
                #expect(error.status == 400)
            }
        }
        await world.harness.shutdown()
    }
}

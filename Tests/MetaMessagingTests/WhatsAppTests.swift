import Essentials
import Foundation
import FunctionRuntime
import KeyValueStore
import Logging
import MetaGraph
import MetaMessaging
import MetaTenancy
import MetaWebhooks
import NIOHTTPTransport
import TestSupport
import Testing

/// WhatsApp as a channel of its own (issue 22): its own token, never the Page's.
@Suite struct WhatsAppTests {
    typealias H = FunctionHarness
    typealias W = HandlerRulesTests

    static let salon = Tenant(businessId: "B0300003", locationId: "L-centre")
    static let page = "401"
    static let phone = "1065400000401"
    static let waba = "1022900000401"

    static func whatsAppText(
        to phone: String = phone, id: String, text: String, from: String = "16505551234", timestamp: Int64 = WallClock.epochSeconds()
    ) -> String {
        #"{"object":"whatsapp_business_account","entry":[{"id":"\#(waba)","changes":[{"field":"messages","value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550000401","phone_number_id":"\#(phone)"},"contacts":[{"profile":{"name":"Ana"},"wa_id":"\#(from)"}],"messages":[{"from":"\#(from)","id":"\#(id)","timestamp":"\#(timestamp)","type":"text","text":{"body":"\#(text)"}}]}}]}]}"#
    }

    static func connectBoth(_ world: W.World, pageToken: String = "page-token-401") async throws {
        await world.harness.graph.allow(token: pageToken, accounts: [page])
        await world.harness.graph.allow(token: "wa-token-401", accounts: [phone])
        try await world.directory.connect(tenant: salon, pageId: page, instagramAccountId: nil, pageAccessToken: pageToken)
        try await world.directory.connectWhatsApp(
            tenant: salon, phoneNumberId: phone, wabaId: waba, displayPhoneNumber: "+1 555-000-0401", token: "wa-token-401")
    }

    @Test(arguments: StoreBackend.allCases)
    func eachChannelGoesOutWithItsOwnToken(_ backend: StoreBackend) async throws {
        let world = try await W.world(backend: backend)
        try await Self.connectBoth(world)

        let whatsapp = try await W.deliver(world, Self.whatsAppText(id: "wamid.IN1", text: "hola"))
        #expect(W.summary(whatsapp)["answered"] as? Int == 1)
        let messenger = H.messaging(object: "page", account: Self.page, events: [H.textEvent(mid: "m_401", text: "hi", recipient: Self.page)])
        #expect(W.summary(try await W.deliver(world, messenger))["answered"] as? Int == 1)
        let send = try SendHandler.parse(["businessId": "B0300003", "platform": "whatsapp", "recipientId": "16505551234", "message": ["text": "hi"]])
        _ = try await world.send.send(send, context: world.context())

        let sent = await world.harness.graph.messages
        #expect(sent.map(\.accountId) == [Self.phone, Self.page, Self.phone])
        #expect(sent.map(\.token) == ["wa-token-401", "page-token-401", "wa-token-401"])

        // Reconnecting the Page keeps the number and its token.
        try await Self.connectBoth(world, pageToken: "page-token-401-b")
        try await world.directory.connect(tenant: Self.salon, pageId: Self.page, instagramAccountId: nil, pageAccessToken: "page-token-401-c")
        await world.harness.graph.allow(token: "page-token-401-c", accounts: [Self.page])
        let connection = try #require(try await world.directory.credentials(tenant: Self.salon))
        #expect(connection.token(for: .messenger) == "page-token-401-c")
        #expect(connection.token(for: .whatsapp) == "wa-token-401")
        #expect(connection.phoneNumberId == Self.phone && connection.wabaId == Self.waba)
        await world.harness.shutdown()
    }

    @Test(arguments: StoreBackend.allCases)
    func aNumberWithoutAWhatsAppTokenIsNeverSentWithThePageToken(_ backend: StoreBackend) async throws {
        let world = try await W.world(backend: backend)
        await world.harness.graph.allow(token: "page-token-401", accounts: [Self.page, Self.phone])
        // A location's connection holding a number but only a Page token (as the previous
        // version's reconnect left it).
        try await world.harness.store.put(
            world.harness.tables.credentials,
            item: [
                "businessId": .s("B0300003"), "serviceType": .s("meta#L-centre"), "locationId": .s("L-centre"), "isActive": .bool(true),
                "credentials": .m(["accessToken": .s("page-token-401"), "pageId": .s(Self.page), "phoneNumberId": .s(Self.phone)]),
            ])
        let send = try SendHandler.parse(["businessId": "B0300003", "platform": "whatsapp", "recipientId": "16505551234", "message": ["text": "hi"]])
        do {
            _ = try await world.send.send(send, context: world.context())
            Issue.record("a WhatsApp message went out with a Page token")
        } catch {
            #expect(error.errorType == "MissingAccount")
            #expect(error.errorMessage.contains("connect WhatsApp"))
        }
        #expect(await world.harness.graph.messages.isEmpty)
        await world.harness.shutdown()
    }

    @Test(arguments: StoreBackend.allCases)
    func aNumberOwnedByAnotherBusinessIsRefusedAndNothingChanges(_ backend: StoreBackend) async throws {
        let world = try await W.world(backend: backend)
        // The harness's demo business owns H.phoneNumberId.
        await #expect(throws: TenantDirectory.ConnectError.ownedByAnotherBusiness(identifier: H.phoneNumberId)) {
            try await world.directory.connectWhatsApp(
                tenant: Self.salon, phoneNumberId: H.phoneNumberId, wabaId: Self.waba, displayPhoneNumber: nil, token: "wa-token-401")
        }
        #expect(try await world.directory.route(identifier: H.phoneNumberId)?.tenant == H.tenant)
        #expect(try await world.directory.connections(businessId: "B0300003").isEmpty)
        await world.harness.shutdown()
    }

    static func status(_ sentId: String, _ state: String, phone: String = phone, error: (Int, String)? = nil) -> String {
        let errors =
            error.map { #","errors":[{"code":\#($0.0),"title":"\#($0.1)","message":"\#($0.1)","error_data":{"details":"Message failed to send."}}]"# } ?? ""
        return
            #"{"object":"whatsapp_business_account","entry":[{"id":"\#(waba)","changes":[{"field":"messages","value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550000401","phone_number_id":"\#(phone)"},"statuses":[{"id":"\#(sentId)","status":"\#(state)","timestamp":"\#(WallClock.epochSeconds())","recipient_id":"16505551234"\#(errors)}]}}]}]}"#
    }

    @Test(arguments: StoreBackend.allCases)
    func aFailedStatusMarksTheMessageItAnsweredAndTheConnectionShowsIt(_ backend: StoreBackend) async throws {
        let world = try await W.world(backend: backend)
        try await Self.connectBoth(world)
        let table = world.harness.tables.processedMessages
        func record(_ id: String) async throws -> Item? { try await world.harness.store.get(table, key: ["messageId": .s(id)]) }

        #expect(W.summary(try await W.deliver(world, Self.whatsAppText(id: "wamid.IN2", text: "hola")))["answered"] as? Int == 1)
        #expect(await world.harness.graph.messages.count == 1)
        let replyId = "wamid.SENT1"  // the stand-in numbers the messages it accepts
        #expect(try await record("sent:\(replyId)")?["inReplyTo"]?.string == "wamid.IN2")

        let delivered = try await W.deliver(world, Self.status(replyId, "delivered"))
        #expect(delivered.status == 200 && W.summary(delivered)["statuses"] as? Int == 1)
        #expect(try await record("wamid.IN2")?["deliveryStatus"]?.string == "delivered")

        let failed = try await world.receive.handle(
            W.webhook(Self.status(replyId, "failed", error: (131047, "Re-engagement message"))), context: world.context())
        #expect(W.summary(failed)["deliveryFailures"] as? Int == 1)
        let inbound = try #require(try await record("wamid.IN2"))
        #expect(inbound["status"]?.string == "answered")
        #expect(inbound["deliveryStatus"]?.string == "failed")
        #expect(inbound["deliveryErrorCode"]?.int == 131047)
        #expect(inbound["deliveryErrorTitle"]?.string == "Re-engagement message")

        // A late `read` does not undo the failure; unknown messages and numbers are acknowledged.
        _ = try await W.deliver(world, Self.status(replyId, "read"))
        #expect(try await record("wamid.IN2")?["deliveryStatus"]?.string == "failed")
        let unknown = try await W.deliver(world, Self.status("wamid.NOT_OURS", "failed", error: (131026, "Message undeliverable")))
        #expect(unknown.status == 200 && W.summary(unknown)["statuses"] as? Int == 0)
        let stranger = try await W.deliver(world, Self.status(replyId, "failed", phone: "1065499999999"))
        #expect(stranger.status == 200 && W.summary(stranger)["unknownTenant"] as? Int == 1)

        // The connection status shows the failure on the number.
        let (_, connections) = try await ConnectionStatusTests.status(world, businessId: "B0300003")
        let accounts = try #require(connections["L-centre"]?["accounts"] as? [[String: Any]])
        let number = try #require(accounts.first { $0["id"] as? String == Self.phone })
        let failure = number["lastDeliveryFailure"] as? [String: Any]
        #expect(failure?["code"] as? Int == 131047)
        #expect(failure?["messageId"] as? String == replyId)
        await world.harness.shutdown()
    }

    @Test(arguments: StoreBackend.allCases)
    func aBusinessesOwnSendIsRecordedForItsStatuses(_ backend: StoreBackend) async throws {
        let world = try await W.world(backend: backend)
        try await Self.connectBoth(world)
        let send = SendHandler(directory: world.directory, sender: world.send.sender, ledger: world.ledger)
        let request = try SendHandler.parse(["businessId": "B0300003", "platform": "whatsapp", "recipientId": "16505551234", "message": ["text": "hi"]])
        let sent = try #require(await send.send(request, context: world.context()).first)
        _ = try await W.deliver(world, Self.status(sent.messageId, "failed", error: (131049, "Meta chose not to deliver")))
        let record = try await world.harness.store.get(world.harness.tables.processedMessages, key: ["messageId": .s("sent:\(sent.messageId)")])
        #expect(record?["status"]?.string == "failed")
        #expect(record?["errorCode"]?.int == 131049)
        #expect(record?["inReplyTo"] == nil)
        await world.harness.shutdown()
    }

    // MARK: The customer service window

    static func request(_ fields: [String: JSON]) throws -> SendHandler.Request {
        var document: [String: JSON] = ["businessId": "B0100001", "message": ["text": "Your table is ready"]]
        document.merge(fields) { $1 }
        return try SendHandler.parse(.dictionary(document))
    }

    static func refusal(_ world: W.World, _ request: SendHandler.Request) async -> SendError? {
        do {
            _ = try await world.send.send(request, context: world.context())
            return nil
        } catch {
            return error
        }
    }

    @Test(arguments: StoreBackend.allCases)
    func freeFormMessagesGoOnlyInsideTheWindowAndAPersonsReplyUpToSevenDays(_ backend: StoreBackend) async throws {
        let world = try await W.world(backend: backend)
        let graph = world.harness.graph
        let newcomer: [String: JSON] = ["platform": "instagram", "recipientId": "17000000001"]

        // Never wrote: refused before any call.
        let never = await Self.refusal(world, try Self.request(newcomer))
        #expect(never?.errorType == "OutsideWindow" && never?.status == 422)
        #expect(await graph.messages.isEmpty)

        // Writes: answered, and the business may write inside 24 hours, as RESPONSE.
        let body = H.messaging(events: [H.textEvent(mid: "m_window_1", text: "hi", sender: "17000000001")])
        _ = try await W.deliver(world, body)
        #expect(await Self.refusal(world, try Self.request(newcomer)) == nil)
        #expect(await graph.messages.last?.body?["messaging_type"] as? String == "RESPONSE")

        // 25 hours on: the agent's kind of message is refused, with when the window closed.
        let wrote = world.clock.now
        world.clock.advance(25 * 3600)
        let late = await Self.refusal(world, try Self.request(newcomer))
        #expect(
            late
                == .outsideWindow(
                    "the customer service window closed at \(ISO8601.format(epochSeconds: wrote + 24 * 3600)): a person's reply may go with \"humanAgent\": true up to 7 days after the customer's last message",
                    closedAt: ISO8601.format(epochSeconds: wrote + 24 * 3600)))
        // A person's reply goes with the HUMAN_AGENT tag; the tag without saying so is refused.
        #expect(await Self.refusal(world, try Self.request(newcomer.merging(["humanAgent": true]) { $1 })) == nil)
        let tagged = await graph.messages.last?.body
        #expect(tagged?["messaging_type"] as? String == "MESSAGE_TAG" && tagged?["tag"] as? String == "HUMAN_AGENT")
        #expect(throws: SendError.self) { try Self.request(newcomer.merging(["tag": "HUMAN_AGENT"]) { $1 }) }

        // Past 7 days, even a person's reply is refused.
        world.clock.advance(6 * 24 * 3600)
        #expect(await Self.refusal(world, try Self.request(newcomer.merging(["humanAgent": true]) { $1 }))?.errorType == "OutsideWindow")
        #expect(await graph.messages.count == 3)  // the agent's answer to "hi", and the two sends
        await world.harness.shutdown()
    }

    @Test(arguments: StoreBackend.allCases)
    func whatsAppTakesTemplatesOutsideTheWindowAndTheirErrorsHaveNames(_ backend: StoreBackend) async throws {
        let world = try await W.world(backend: backend)
        let graph = world.harness.graph
        world.clock.advance(25 * 3600)
        let customer: [String: JSON] = ["platform": "whatsapp", "recipientId": "16505551234"]
        #expect(await Self.refusal(world, try Self.request(customer))?.errorType == "OutsideWindow")

        let template: JSON = [
            "name": "table_ready", "language": "en_US",
            "components": [
                ["type": "body", "parameters": [["type": "text", "text": "Ana"], ["type": "text", "text": "19:30"]]],
                ["type": "button", "sub_type": "quick_reply", "index": "0", "parameters": [["type": "payload", "payload": "CONFIRM"]]],
            ],
        ]
        #expect(await Self.refusal(world, try Self.request(customer.merging(["message": ["template": template]]) { $1 })) == nil)
        let sent = try #require(await graph.messages.last?.body)
        #expect(sent["type"] as? String == "template")
        let sentTemplate = sent["template"] as? [String: Any]
        #expect(sentTemplate?["name"] as? String == "table_ready")
        #expect((sentTemplate?["language"] as? [String: Any])?["code"] as? String == "en_US")
        #expect((sentTemplate?["components"] as? [[String: Any]])?.count == 2)

        // Shapes WhatsApp would refuse are refused here, before any call.
        let invalid: [JSON] = [
            ["name": "Table Ready!", "language": "en_US"],
            ["name": "table_ready", "language": "english (US)"],
            ["name": "table_ready", "language": "en_US", "components": [["parameters": []]]],
            ["name": "table_ready", "language": "en_US", "components": [["type": "button", "sub_type": "quick_reply", "index": 12]]],
            ["name": "table_ready", "language": "en_US", "components": [["type": "body", "parameters": [["type": "text", "text": " "]]]]],
        ]
        for shape in invalid {
            #expect(throws: SendError.self) { try Self.request(customer.merging(["message": ["template": shape]]) { $1 }) }
        }
        #expect(throws: SendError.self) {
            try Self.request(["platform": "messenger", "recipientId": "42", "message": ["template": ["name": "x", "language": "en"]]])
        }

        // Meta's template errors, each with its own type.
        for (code, type) in [(132001, "TemplateNotFound"), (132000, "TemplateParameterMismatch"), (132016, "TemplateUnavailable")] {
            await graph.script(
                [GraphStandIn.error(code: code, message: "(#\(code)) template error", type: "OAuthException")], pathSuffix: "/\(H.phoneNumberId)/messages")
            let refused = await Self.refusal(world, try Self.request(customer.merging(["message": ["template": template]]) { $1 }))
            #expect(refused?.errorType == type && refused?.status == 422)
        }
        await world.harness.shutdown()
    }
}

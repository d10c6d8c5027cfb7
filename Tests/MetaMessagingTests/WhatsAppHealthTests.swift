import Essentials
import Foundation
import FunctionRuntime
import KeyValueStore
import Logging
import MetaGraph
import MetaMessaging
import MetaTelemetry
import MetaTenancy
import MetaWebhooks
import TestSupport
import Testing

/// WhatsApp's health (issue 36): quality, account and template webhooks with Meta's documented
/// shapes update the number's item, the connection status says what to do, and the template
/// list lets `send` refuse what Meta would.
@Suite struct WhatsAppHealthTests {
    typealias H = FunctionHarness
    typealias W = HandlerRulesTests

    static let tenant = Tenant(businessId: "B0400004", locationId: "L-wa")
    static let phone = "1065400000501"
    static let waba = "1022900000501"
    static let token = "wa-token-501"

    /// A WhatsApp Business Account change (`entry.id` the WABA, `changes[].field`).
    static func change(_ field: String, _ value: String) -> String {
        #"{"object":"whatsapp_business_account","entry":[{"id":"\#(waba)","time":\#(WallClock.epochSeconds()),"changes":[{"value":\#(value),"field":"\#(field)"}]}]}"#
    }

    static func world(_ backend: StoreBackend = .file) async throws -> W.World {
        let world = try await W.world(backend: backend)
        await world.harness.graph.allow(token: token, accounts: [phone, waba])
        try await world.directory.connectWhatsApp(
            tenant: tenant, phoneNumberId: phone, wabaId: waba, displayPhoneNumber: "+1 555-000-0501", token: token)
        return world
    }

    static func status(_ world: W.World) async throws -> [String: Any] {
        let (_, byLocation) = try await ConnectionStatusTests.status(world, businessId: tenant.businessId)
        return try #require(byLocation[tenant.locationId])
    }

    @Test(arguments: StoreBackend.allCases)
    func qualityAccountAndTemplateWebhooksReachTheStatus(_ backend: StoreBackend) async throws {
        let world = try await Self.world(backend)
        let quality = try await W.deliver(
            world,
            Self.change(
                "phone_number_quality_update",
                #"{"display_phone_number":"15550000501","event":"FLAGGED","current_limit":"TIER_1K","max_daily_conversations_per_business":"TIER_1K"}"#))
        #expect(quality.status == 200)
        #expect(W.summary(quality)["healthUpdates"] as? Int == 1)
        var status = try await Self.status(world)
        var health = try #require(status["whatsappHealth"] as? [String: Any])
        #expect(health["qualityEvent"] as? String == "FLAGGED")
        #expect(health["messagingLimit"] as? String == "TIER_1K")
        #expect((status["problem"] as? String)?.contains("quality dropped") == true)

        // Back to normal, then a template paused and one rejected: named, with what to do.
        _ = try await W.deliver(world, Self.change("phone_number_quality_update", #"{"display_phone_number":"15550000501","event":"UNFLAGGED"}"#))
        _ = try await W.deliver(
            world,
            Self.change(
                "message_template_status_update",
                #"{"event":"PAUSED","message_template_id":1234567890,"message_template_name":"order_update","message_template_language":"en_US","reason":"NONE","message_template_category":"UTILITY"}"#
            ))
        status = try await Self.status(world)
        health = try #require(status["whatsappHealth"] as? [String: Any])
        #expect(health["templatesNotUsable"] as? [String: String] == ["order_update|en_US": "PAUSED"])
        #expect((status["problem"] as? String)?.contains("order_update|en_US") == true)

        // The account restricted: said first.
        _ = try await W.deliver(world, Self.change("account_update", #"{"phone_number":"15550000501","event":"ACCOUNT_RESTRICTION"}"#))
        status = try await Self.status(world)
        #expect((status["problem"] as? String)?.contains("ACCOUNT_RESTRICTION") == true)

        // A malformed change is reported, never answered, and stops nothing.
        let bad = try await W.deliver(world, Self.change("phone_number_quality_update", #"{"display_phone_number":"1"}"#))
        #expect(bad.status == 200)
        #expect(W.summary(bad)["invalid"] as? Int == 1)
        await world.harness.shutdown()
    }

    @Test func aQualityDropIsAMetric() throws {
        let events = [ConversationEvent(.whatsappQualityDrop, platform: .whatsapp)]
        let document = try #require(Metrics().documents(for: events, function: "receive", now: 0).first)
        #expect(document["WhatsAppQualityDrops"] == 1)
        #expect(
            WhatsAppHealthEvent(wabaId: "w", kind: .quality(displayPhoneNumber: nil, event: "DOWNGRADE", limit: nil, oldLimit: nil), timestamp: 0)
                .isQualityDrop)
        #expect(
            !WhatsAppHealthEvent(wabaId: "w", kind: .quality(displayPhoneNumber: nil, event: "UPGRADE", limit: nil, oldLimit: nil), timestamp: 0)
                .isQualityDrop)
    }

    static func template(_ name: String, status: String, body: String, header: Bool = false) -> [String: Any] {
        var components: [[String: Any]] = [["type": "BODY", "text": body]]
        if header { components.insert(["type": "HEADER", "format": "TEXT", "text": "Comanda {{1}}"], at: 0) }
        return ["name": name, "language": "ro", "status": status, "category": "UTILITY", "components": components, "id": "1\(name.count)"]
    }

    @Test(arguments: StoreBackend.allCases)
    func theTemplateListIsReadWholeAndSendRefusesWhatMetaWould(_ backend: StoreBackend) async throws {
        let world = try await Self.world(backend)
        await world.harness.graph.serveTemplates(
            waba: Self.waba, token: Self.token,
            pages: [
                [
                    Self.template("order_update", status: "APPROVED", body: "Bună {{1}}, comanda {{2}} e gata. {{1}}", header: true),
                    Self.template("promo_old", status: "REJECTED", body: "Reducere"),
                ],
                [Self.template("booking_reminder", status: "APPROVED", body: "Vă așteptăm mâine la {{1}}")],
            ])
        let request = HTTPRequest(
            method: "GET", path: "/external/meta/whatsapp/templates", query: ["businessId": [Self.tenant.businessId], "locationId": [Self.tenant.locationId]])
        let response = try await ConnectionStatusTests.handler(world).handle(request, logger: Logger(label: "test"))
        #expect(response.status == 200)
        #expect(!response.body.contains(Self.token))
        let document = try #require(try JSONSerialization.jsonObject(with: Data(response.body.utf8)) as? [String: Any])
        let templates = try #require(document["templates"] as? [[String: Any]])
        #expect(templates.map { $0["name"] as? String } == ["order_update", "booking_reminder"])
        let components = try #require(templates.first?["components"] as? [[String: Any]])
        #expect(components.map { $0["type"] as? String } == ["HEADER", "BODY"])
        #expect(components.map { $0["parameters"] as? Int } == [1, 2])
        #expect(components.first?["format"] as? String == "TEXT")

        // send: a template not in the list, or rejected, is refused before Meta; an approved one goes.
        func send(_ name: String) async throws -> [SentMessage] {
            let input: JSON = [
                "businessId": .string(Self.tenant.businessId), "platform": "whatsapp", "recipientId": "16505551234",
                "message": ["template": ["name": .string(name), "language": "ro"]],
            ]
            return try await world.send.send(try SendHandler.parse(input), context: world.context())
        }
        for name in ["no_such_template", "promo_old"] {
            do {
                _ = try await send(name)
                Issue.record("\(name) was sent")
            } catch {
                #expect((error as? SendError)?.errorType == "InvalidTemplate", "\(name)")
            }
        }
        #expect(await world.harness.graph.messages.isEmpty)
        _ = try await send("booking_reminder")
        #expect(await world.harness.graph.messages.count == 1)

        // A template paused later (its webhook) is refused too.
        _ = try await W.deliver(
            world,
            Self.change(
                "message_template_status_update",
                #"{"event":"PAUSED","message_template_id":99,"message_template_name":"booking_reminder","message_template_language":"ro","reason":"NONE"}"#))
        await #expect(throws: SendError.self) { _ = try await send("booking_reminder") }
        #expect(await world.harness.graph.messages.count == 1)

        // A location without WhatsApp: a clear 404.
        let none = HTTPRequest(method: "GET", path: "/external/meta/whatsapp/templates", query: ["businessId": ["B0100001"], "locationId": ["L-none"]])
        do {
            _ = try await ConnectionStatusTests.handler(world).handle(none, logger: Logger(label: "test"))
            Issue.record("a location without WhatsApp listed templates")
        } catch {
            #expect(error.status == 404)
        }
        await world.harness.shutdown()
    }
}

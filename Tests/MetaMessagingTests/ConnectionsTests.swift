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

/// A business with several locations, each with its own connection (issue 15's first part),
/// on both store backends, in process.
@Suite struct ConnectionsTests {
    typealias H = FunctionHarness
    typealias W = HandlerRulesTests

    static let salonA = Tenant(businessId: "B0200002", locationId: "L-north")
    static let salonB = Tenant(businessId: "B0200002", locationId: "L-south")

    @Test(arguments: StoreBackend.allCases)
    func eachLocationIsAnsweredWithItsOwnToken(_ backend: StoreBackend) async throws {
        let world = try await W.world(backend: backend)
        await world.harness.graph.allow(token: "token-north", accounts: ["301"])
        await world.harness.graph.allow(token: "token-south", accounts: ["302"])
        try await world.directory.connect(tenant: Self.salonA, pageId: "301", instagramAccountId: "17841400000000301", pageAccessToken: "token-north")
        try await world.directory.connect(tenant: Self.salonB, pageId: "302", instagramAccountId: "17841400000000302", pageAccessToken: "token-south")

        for (account, mid) in [("17841400000000301", "m_north"), ("17841400000000302", "m_south")] {
            let body = H.messaging(account: account, events: [H.textEvent(mid: mid, text: "hi", recipient: account)])
            let response = try await world.receive.handle(W.webhook(body), context: world.context())
            #expect(W.summary(response)["answered"] as? Int == 1)
        }
        let sent = await world.harness.graph.messages
        #expect(sent.map(\.accountId) == ["301", "302"])
        #expect(sent.map(\.token) == ["token-north", "token-south"])

        // Reconnecting the north salon with a new token leaves the south one as it was.
        try await world.directory.connect(tenant: Self.salonA, pageId: "301", instagramAccountId: "17841400000000301", pageAccessToken: "token-north-2")
        #expect(try await world.directory.credentials(tenant: Self.salonA)?.accessToken == "token-north-2")
        #expect(try await world.directory.credentials(tenant: Self.salonB)?.accessToken == "token-south")
        #expect(try await world.directory.connections(businessId: "B0200002").count == 2)
        await world.harness.shutdown()
    }

    @Test(arguments: StoreBackend.allCases)
    func sendPicksTheNamedConnectionAndAsksWhenItCannotTell(_ backend: StoreBackend) async throws {
        let world = try await W.world(backend: backend)
        await world.harness.graph.allow(token: "token-north", accounts: ["301"])
        await world.harness.graph.allow(token: "token-south", accounts: ["302"])
        try await world.directory.connect(tenant: Self.salonA, pageId: "301", instagramAccountId: nil, pageAccessToken: "token-north")
        try await world.directory.connect(tenant: Self.salonB, pageId: "302", instagramAccountId: nil, pageAccessToken: "token-south")
        // Customer 42 wrote to both salons' Pages.
        for page in ["301", "302"] {
            try await world.harness.openWindows(at: world.clock.now, customers: [(.messenger, "42")]) { _ in page }
        }
        let base: [String: JSON] = ["businessId": "B0200002", "platform": "messenger", "recipientId": "42", "message": ["text": "hi"]]

        await #expect(throws: SendError.self) { _ = try await world.send.send(try SendHandler.parse(.dictionary(base)), context: world.context()) }
        do {
            _ = try await world.send.send(try SendHandler.parse(.dictionary(base)), context: world.context())
        } catch {
            #expect(error.errorType == "AmbiguousConnection")
            #expect(error.status == 400)
        }
        var byLocation = base
        byLocation["locationId"] = "L-south"
        _ = try await world.send.send(try SendHandler.parse(.dictionary(byLocation)), context: world.context())
        var byAccount = base
        byAccount["accountId"] = "301"
        _ = try await world.send.send(try SendHandler.parse(.dictionary(byAccount)), context: world.context())
        #expect(await world.harness.graph.messages.map(\.token) == ["token-south", "token-north"])

        var foreign = base
        foreign["accountId"] = .string(H.pageId)  // the demo business's Page, not this business's
        await #expect(throws: SendError.self) { _ = try await world.send.send(try SendHandler.parse(.dictionary(foreign)), context: world.context()) }
        await world.harness.shutdown()
    }

    @Test(arguments: StoreBackend.allCases)
    func theSeedsSingleConnectionShapeStillRoutesAndIsTakenOverOnReconnect(_ backend: StoreBackend) async throws {
        // The harness seeds B0100001 in the single-connection shape (serviceType "meta").
        let world = try await W.world(backend: backend)
        let body = H.messaging(events: [H.textEvent(mid: "m_seed_shape", text: "hi")])
        let response = try await world.receive.handle(W.webhook(body), context: world.context())
        #expect(W.summary(response)["answered"] as? Int == 1)
        #expect(await world.harness.graph.messages.first?.token == H.token)
        let only = try SendHandler.parse(["businessId": "B0100001", "platform": "whatsapp", "recipientId": "1650", "message": ["text": "hi"]])
        _ = try await world.send.send(only, context: world.context())

        // Connecting the same Page for its location replaces the old item, keeping the WhatsApp number.
        await world.harness.graph.allow(token: "renewed-token", accounts: [H.pageId])
        try await world.directory.connect(tenant: H.tenant, pageId: H.pageId, instagramAccountId: H.instagramId, pageAccessToken: "renewed-token")
        let connections = try await world.directory.connections(businessId: "B0100001")
        #expect(connections.count == 1)
        #expect(connections.first?.serviceType == "meta#L0100001")
        #expect(connections.first?.accessToken == "renewed-token")
        #expect(connections.first?.phoneNumberId == H.phoneNumberId)
        // The seed's one token served WhatsApp: it stays the number's token, the new Page token never sends there.
        #expect(connections.first?.token(for: .whatsapp) == H.token)
        #expect(connections.first?.token(for: .instagram) == "renewed-token")
        #expect(try await world.harness.store.get(world.harness.tables.credentials, key: ["businessId": .s("B0100001"), "serviceType": .s("meta")]) == nil)
        await world.harness.shutdown()
    }
}

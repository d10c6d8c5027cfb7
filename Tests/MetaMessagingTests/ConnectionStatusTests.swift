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

/// `GET /external/meta/connections?businessId=`: what a business reads when an account stops
/// answering (issue 15), and `receive`'s cheap record of when a webhook last arrived.
@Suite struct ConnectionStatusTests {
    typealias H = FunctionHarness
    typealias W = HandlerRulesTests

    static let appId = "100000000000001"
    static let north = Tenant(businessId: "B0200002", locationId: "L-north")
    static let south = Tenant(businessId: "B0200002", locationId: "L-south")
    static let northInstagram = "17841400000000301"

    static func handler(_ world: W.World) -> ConnectionsHandler {
        ConnectionsHandler(
            directory: world.directory, ledger: world.ledger,
            graph: GraphClient(transport: NIOHTTPTransport(), baseURL: world.harness.graph.baseURL, appSecret: H.appSecret),
            appSecret: H.appSecret, appId: appId, clock: world.clock.clock)
    }

    static func status(_ world: W.World, businessId: String = "B0200002") async throws -> (HTTPResponse, [String: [String: Any]]) {
        let request = HTTPRequest(method: "GET", path: "/external/meta/connections", query: ["businessId": [businessId]])
        let response = try await handler(world).handle(request, logger: Logger(label: "test"))
        let document = (try JSONSerialization.jsonObject(with: Data(response.body.utf8))) as? [String: Any]
        let connections = document?["connections"] as? [[String: Any]] ?? []
        var byLocation: [String: [String: Any]] = [:]
        for connection in connections { byLocation[connection["locationId"] as? String ?? "-"] = connection }
        return (response, byLocation)
    }

    @Test(arguments: StoreBackend.allCases)
    func theStatusSaysWhatMetaSeesAndWhenWebhooksLastArrived(_ backend: StoreBackend) async throws {
        let world = try await W.world(backend: backend)
        let graph = world.harness.graph
        await graph.allow(token: "token-north", accounts: ["301"])
        await graph.allow(token: "token-south", accounts: ["302"])
        try await world.directory.connect(
            tenant: Self.north, pageId: "301", instagramAccountId: Self.northInstagram, pageAccessToken: "token-north", connectedBy: "1777")
        try await world.directory.connect(tenant: Self.south, pageId: "302", instagramAccountId: nil, pageAccessToken: "token-south")
        await graph.subscribe(page: "301", fields: ["messages", "messaging_postbacks"])
        // The south Page lost its subscription, and its token expired.
        await graph.describe(token: "token-south", .expired(at: 1_767_254_400))

        // A customer writes to the north salon's Instagram account.
        let context = world.context()
        let body = H.messaging(account: Self.northInstagram, events: [H.textEvent(mid: "m_status_1", text: "hi", recipient: Self.northInstagram)])
        #expect(try await world.receive.handle(W.webhook(body), context: context).status == 200)
        await context.afterResponse.run(before: .now + .seconds(5))

        let (response, connections) = try await Self.status(world)
        #expect(response.status == 200)
        #expect(!response.body.contains("token-north") && !response.body.contains("token-south") && !response.body.contains(H.appSecret))
        let north = try #require(connections["L-north"])
        #expect(north["active"] as? Bool == true)
        #expect(north["connectedBy"] as? String == "1777")
        #expect(north["problem"] == nil)
        let northToken = north["token"] as? [String: Any]
        #expect(northToken?["valid"] as? Bool == true)
        #expect(northToken?["expiresAt"] as? String == "never")
        #expect((northToken?["scopes"] as? [String])?.contains("instagram_manage_messages") == true)
        #expect((northToken?["missingScopes"] as? [String]) == [])
        let northHooks = north["webhooks"] as? [String: Any]
        #expect(northHooks?["subscribed"] as? Bool == true)
        #expect(northHooks?["fields"] as? [String] == ["messages", "messaging_postbacks"])
        let accounts = north["accounts"] as? [[String: Any]] ?? []
        #expect(accounts.map { $0["id"] as? String } == ["301", Self.northInstagram])
        #expect(accounts.first?["lastWebhookAt"] == nil)
        #expect(accounts.last?["lastWebhookAt"] as? String == ISO8601.format(epochSeconds: world.clock.now))

        let south = try #require(connections["L-south"])
        let southToken = south["token"] as? [String: Any]
        #expect(southToken?["checked"] as? Bool == true)
        #expect(southToken?["valid"] as? Bool == false)
        #expect(southToken?["expiresAt"] as? String == "2026-01-01T08:00:00Z")
        #expect((southToken?["detail"] as? String)?.contains("Session has expired") == true)
        let southHooks = south["webhooks"] as? [String: Any]
        #expect(southHooks?["checked"] as? Bool == false)
        #expect((southHooks?["detail"] as? String)?.contains("code 190") == true)
        #expect((south["problem"] as? String)?.contains("connect this location again") == true)

        // The app access token went to the Graph API only, for debug_token.
        let inspections = await graph.calls.filter { $0.path.hasSuffix("/debug_token") }
        #expect(inspections.count == 2)
        #expect(inspections.allSatisfy { $0.token == "\(Self.appId)|\(H.appSecret)" })
        await world.harness.shutdown()
    }

    @Test(arguments: StoreBackend.allCases)
    func aLostSubscriptionADeauthorizationAndAnUnknownBusinessAreShown(_ backend: StoreBackend) async throws {
        let world = try await W.world(backend: backend)
        let graph = world.harness.graph
        await graph.allow(token: "token-north", accounts: ["301"])
        await graph.allow(token: "token-south", accounts: ["302"])
        await graph.describe(token: "token-north", TokenInfo(scopes: ["pages_show_list", "pages_messaging"]))
        try await world.directory.connect(tenant: Self.north, pageId: "301", instagramAccountId: nil, pageAccessToken: "token-north")
        try await world.directory.connect(tenant: Self.south, pageId: "302", instagramAccountId: nil, pageAccessToken: "token-south")
        _ = try await world.directory.deactivate(Self.south, reason: "deauthorized")

        let (_, connections) = try await Self.status(world)
        let north = try #require(connections["L-north"])
        #expect((north["webhooks"] as? [String: Any])?["subscribed"] as? Bool == false)
        #expect((north["token"] as? [String: Any])?["missingScopes"] as? [String] == ["instagram_manage_messages"])
        #expect((north["problem"] as? String)?.contains("instagram_manage_messages") == true)
        let south = try #require(connections["L-south"])
        #expect(south["active"] as? Bool == false)
        #expect(south["inactiveReason"] as? String == "deauthorized")
        #expect((south["token"] as? [String: Any])?["detail"] as? String == "no token is held for this connection")
        #expect((south["problem"] as? String)?.hasPrefix("inactive (deauthorized)") == true)

        let (unknown, none) = try await Self.status(world, businessId: "B0999999")
        #expect(unknown.status == 200 && none.isEmpty)
        let request = HTTPRequest(method: "GET", path: "/external/meta/connections", query: ["businessId": ["../x y"]])
        await #expect(throws: RequestRefused.self) { _ = try await Self.handler(world).handle(request, logger: Logger(label: "test")) }
        await world.harness.shutdown()
    }

    @Test(arguments: StoreBackend.allCases)
    func receiveRecordsAWebhookAtMostOnceAMinuteAndOnlyAfterItsAnswer(_ backend: StoreBackend) async throws {
        let world = try await W.world(backend: backend)
        let key: Item = ["identifierId": .s(H.instagramId)]
        func lastSeen() async throws -> Int64? { try await world.harness.store.get(world.harness.tables.identifiers, key: key)?["lastWebhookAt"]?.int }
        let start = world.clock.now

        let first = world.context()
        let body = H.messaging(events: [H.textEvent(mid: "m_seen_1", text: "hi")])
        #expect(try await world.receive.handle(W.webhook(body), context: first).status == 200)
        #expect(try await lastSeen() == nil)  // not written on the way to the answer
        await first.afterResponse.run(before: .now + .seconds(5))
        #expect(try await lastSeen() == start)

        // The same process, within the minute: nothing to write at all.
        world.clock.advance(30)
        let second = world.context()
        _ = try await world.receive.handle(W.webhook(H.messaging(events: [H.textEvent(mid: "m_seen_2", text: "again")])), context: second)
        await second.afterResponse.run(before: .now + .seconds(5))
        #expect(try await lastSeen() == start)

        // A minute on, it is written again.
        world.clock.advance(31)
        let third = world.context()
        _ = try await world.receive.handle(W.webhook(H.messaging(events: [H.textEvent(mid: "m_seen_3", text: "later")])), context: third)
        await third.afterResponse.run(before: .now + .seconds(5))
        #expect(try await lastSeen() == start + 61)

        // Another process within that minute: the store's condition refuses the second write.
        #expect(try await world.directory.recordWebhookSeen(H.instagramId, epochSeconds: start + 90) == false)
        #expect(try await lastSeen() == start + 61)
        // An identifier nobody connected gets no item.
        #expect(try await world.directory.recordWebhookSeen("17841499999999999", epochSeconds: start) == false)
        #expect(try await world.harness.store.get(world.harness.tables.identifiers, key: ["identifierId": .s("17841499999999999")]) == nil)
        await world.harness.shutdown()
    }

    @Test func sightingsForgetWhenTheyGrowPastTheirCapacity() {
        let sightings = WebhookSightings(interval: 60, capacity: 2)
        #expect(sightings.due(["a", "b", "c"], now: 100) == ["a", "b", "c"])
        #expect(sightings.due(["a"], now: 110) == ["a"])  // cleared: over capacity
        #expect(sightings.due(["a"], now: 120) == [])
        #expect(sightings.due(["a"], now: 180) == ["a"])
        #expect(sightings.due(["a"], now: 10) == ["a"])  // the clock went back: written again, not skipped forever
    }
}

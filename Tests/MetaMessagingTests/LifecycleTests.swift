import Essentials
import Foundation
import FunctionRuntime
import KeyValueStore
import Logging
import MetaConnect
import MetaGraph
import MetaMessaging
import MetaTenancy
import MetaWebhooks
import NIOHTTPTransport
import TestSupport
import Testing

/// A tenant's leaving: Meta's signed_request, disconnect, the deauthorize and data-deletion
/// callbacks, on both store backends, in process.
@Suite struct LifecycleTests {
    typealias H = FunctionHarness
    typealias W = HandlerRulesTests

    struct Vectors: Decodable {
        struct Vector: Decodable {
            let name: String
            let signedRequest: String
            let userId: String?
            let error: String?
        }
        let appSecret: String
        let now: Int64
        let vectors: [Vector]
    }

    /// Made with Python's hmac, base64 and json, independently of the code under test.
    static let vectors: Vectors? = {
        guard let url = Bundle.module.url(forResource: "Fixtures/signed-requests", withExtension: "json"),
            let data = try? Data(contentsOf: url)
        else { return nil }
        return try? JSONDecoder().decode(Vectors.self, from: data)
    }()

    @Test func signedRequestsAreCheckedAsMetaSignsThem() throws {
        let fixture = try #require(Self.vectors)
        #expect(fixture.vectors.count >= 10)
        for vector in fixture.vectors {
            do {
                let parsed = try SignedRequest.verify(vector.signedRequest, appSecret: fixture.appSecret, now: fixture.now)
                #expect(vector.userId == parsed.userId, "\(vector.name)")
            } catch {
                #expect(vector.error == error.rawValue, "\(vector.name)")
            }
        }
    }

    static let logger = Logger(label: "test")

    /// A `signed_request` as Meta makes it for `userId`, issued at `issuedAt` (the fixture's
    /// vectors check the parser at their own time; the handlers get one made at the world's).
    static func signedRequest(userId: String, issuedAt: Int64, secret: String = H.appSecret, padded: Bool = false) -> String {
        func base64URL(_ bytes: [UInt8]) -> String {
            let text = Base64.encode(bytes).replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            return padded ? text : String(text.reversed().drop { $0 == "=" }.reversed())
        }
        let payload = base64URL(Array(#"{"algorithm":"HMAC-SHA256","issued_at":\#(issuedAt),"user_id":"\#(userId)"}"#.utf8))
        return base64URL(HMACSHA256.sign(Array(payload.utf8), key: Array(secret.utf8))) + "." + payload
    }

    static func handler(_ world: W.World, now: Int64) -> ConnectionsHandler {
        ConnectionsHandler(
            directory: world.directory, ledger: world.ledger,
            graph: GraphClient(transport: NIOHTTPTransport(), baseURL: world.harness.graph.baseURL, appSecret: H.appSecret),
            appSecret: H.appSecret, publicBaseURL: "https://api.example.com/", clock: WallClock { now })
    }

    static func callback(_ path: String, signedRequest: String) -> HTTPRequest {
        HTTPRequest(
            method: "POST", path: path, headers: HTTPHeaders([("Content-Type", "application/x-www-form-urlencoded")]),
            body: Array("signed_request=\(FormEncoding.encode(signedRequest))".utf8))
    }

    static func body(_ response: HTTPResponse) -> [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(response.body.utf8))) as? [String: Any] ?? [:]
    }

    static let salon = Tenant(businessId: "B0300003", locationId: "L1")

    /// A connection of `salon` made by the fixture's person.
    static func connected(_ backend: StoreBackend) async throws -> W.World {
        let world = try await W.world(backend: backend)
        await world.harness.graph.configure(OAuthTests.world())
        try await world.directory.connect(
            tenant: salon, pageId: "202", instagramAccountId: "17841400000000202", pageAccessToken: "page-token-202", connectedBy: "10987654321")
        try await world.directory.recordConnector(userId: "10987654321", tenant: salon)
        return world
    }

    @Test(arguments: StoreBackend.allCases)
    func deauthorizeMakesThePersonsConnectionsInactiveAndReleasesThem(_ backend: StoreBackend) async throws {
        let fixture = try #require(Self.vectors)
        let world = try await Self.connected(backend)
        let handler = Self.handler(world, now: world.clock.now)
        let forged = try #require(fixture.vectors.first { $0.name == "forged: another secret" })
        do {
            _ = try await handler.handle(Self.callback("/external/meta/deauthorize", signedRequest: forged.signedRequest), logger: Self.logger)
            Issue.record("a forged signed_request was taken")
        } catch {
            #expect(error.status == 400)
        }
        #expect(try await world.directory.credentials(tenant: Self.salon)?.isActive == true)

        let valid = Self.signedRequest(userId: "10987654321", issuedAt: world.clock.now)
        let answer = try await handler.handle(Self.callback("/external/meta/deauthorize", signedRequest: valid), logger: Self.logger)
        #expect(answer.status == 200)
        #expect(try await world.directory.credentials(tenant: Self.salon) == nil)  // no token left to use
        let item = try await world.harness.store.get(
            world.harness.tables.credentials, key: ["businessId": .s("B0300003"), "serviceType": .s("meta#L1")])
        #expect(item?["isActive"] == .bool(false))
        #expect(item?["inactiveReason"]?.string == "deauthorized")
        #expect(item?["credentials"]?.map?["accessToken"] == nil)
        #expect(try await world.directory.route(identifier: "202") == nil)
        // Released: another business may connect the Page now.
        try await world.directory.connect(
            tenant: Tenant(businessId: "B0400004", locationId: "L9"), pageId: "202", instagramAccountId: nil, pageAccessToken: "t")
        await world.harness.shutdown()
    }

    @Test(arguments: StoreBackend.allCases)
    func dataDeletionDeletesEverythingAndShowsItsStatus(_ backend: StoreBackend) async throws {
        let world = try await Self.connected(backend)
        let handler = Self.handler(world, now: world.clock.now)
        let valid = Self.signedRequest(userId: "10987654321", issuedAt: world.clock.now, padded: true)
        let answer = try await handler.handle(Self.callback("/external/meta/data-deletion", signedRequest: valid), logger: Self.logger)
        #expect(answer.status == 200)
        let code = try #require(Self.body(answer)["confirmation_code"] as? String)
        #expect(code.count == 32)
        #expect(Self.body(answer)["url"] as? String == "https://api.example.com/external/meta/data-deletion/status?code=\(code)")
        #expect(try await world.directory.connections(businessId: "B0300003").isEmpty)
        #expect(try await world.harness.store.get(world.harness.tables.credentials, key: ["businessId": .s("B0300003"), "serviceType": .s("meta#L1")]) == nil)
        #expect(try await world.directory.route(identifier: "17841400000000202") == nil)
        #expect(try await world.directory.connectionsMade(by: "10987654321").isEmpty)
        let record = try await world.harness.store.get(world.harness.tables.processedMessages, key: ["messageId": .s("data-deletion:\(code)")])
        #expect(record?["expiresAt"]?.int == world.clock.now + 90 * 24 * 3600)
        #expect(record?.values.contains(.s("10987654321")) == false)

        let status = try await handler.handle(
            HTTPRequest(method: "GET", path: "/external/meta/data-deletion/status", query: ["code": [code]]), logger: Self.logger)
        #expect(status.status == 200)
        #expect(status.headers["Content-Type"]?.hasPrefix("text/html") == true)
        #expect(status.headers["Content-Security-Policy"]?.contains("default-src 'none'") == true)
        #expect(status.headers["X-Content-Type-Options"] == "nosniff")
        #expect(status.headers["Referrer-Policy"] == "no-referrer")
        #expect(status.body.contains("Status: done"))
        #expect(status.body.contains("no copy or history of it is kept"))
        // With DynamoDB's point-in-time recovery, the page says for how long backups keep it.
        var withBackups = handler
        withBackups.backupRetentionDays = 7
        let said = try await withBackups.handle(
            HTTPRequest(method: "GET", path: "/external/meta/data-deletion/status", query: ["code": [code]]), logger: Self.logger)
        #expect(said.body.contains("for 7 days"))
        #expect(!said.body.contains("no copy"))
        let unknown = try await handler.handle(
            HTTPRequest(method: "GET", path: "/external/meta/data-deletion/status", query: ["code": [String(repeating: "a", count: 32)]]),
            logger: Self.logger)
        #expect(unknown.status == 404)
        await world.harness.shutdown()
    }

    @Test(arguments: StoreBackend.allCases)
    func disconnectIsIdempotentAndSurvivesAGraphFailure(_ backend: StoreBackend) async throws {
        let world = try await Self.connected(backend)
        let handler = Self.handler(world, now: world.clock.now + 60)
        let path = "/external/meta/connections/B0300003/L1"
        let first = try await handler.handle(HTTPRequest(method: "DELETE", path: path), logger: Self.logger)
        #expect(Self.body(first)["status"] as? String == "disconnected")
        #expect(Self.body(first)["unsubscribed"] as? Bool == true)
        #expect((Self.body(first)["releasedIdentifiers"] as? [String])?.sorted() == ["17841400000000202", "202"])
        #expect(await world.harness.graph.calls.contains { $0.method == "DELETE" && $0.path.hasSuffix("/202/subscribed_apps") })
        let second = try await handler.handle(HTTPRequest(method: "DELETE", path: path), logger: Self.logger)
        #expect(Self.body(second)["status"] as? String == "not_connected")
        try await world.directory.connect(
            tenant: Tenant(businessId: "B0400004", locationId: "L9"), pageId: "202", instagramAccountId: nil, pageAccessToken: "t")

        // Graph refusing the unsubscribe: our data goes all the same, and the answer says what stays.
        try await world.directory.connect(
            tenant: Tenant(businessId: "B0300003", locationId: "L2"), pageId: "203", instagramAccountId: nil, pageAccessToken: "page-token-203")
        await world.harness.graph.script(
            [GraphStandIn.error(status: 500, code: 2, message: "Service temporarily unavailable", transient: true)], pathSuffix: "/subscribed_apps")
        let failing = try await handler.handle(HTTPRequest(method: "DELETE", path: "/external/meta/connections/B0300003/L2"), logger: Self.logger)
        #expect(Self.body(failing)["status"] as? String == "disconnected")
        #expect(Self.body(failing)["unsubscribed"] as? Bool == false)
        #expect((Self.body(failing)["notUndone"] as? [String])?.first?.contains("203") == true)
        #expect(try await world.directory.credentials(tenant: Tenant(businessId: "B0300003", locationId: "L2")) == nil)
        do {
            _ = try await handler.handle(HTTPRequest(method: "DELETE", path: "/external/meta/connections/B0300003"), logger: Self.logger)
            Issue.record("a path without a location was taken")
        } catch {
            #expect(error.status == 400)
        }
        await world.harness.shutdown()
    }

    /// Every file under the file store's folder that holds `secret`.
    static func files(of world: W.World, holding secret: String) throws -> [String] {
        let directory = try #require(world.harness.environment["KV_FILE_DIR"])
        let names = FileManager.default.enumerator(atPath: directory)?.compactMap { $0 as? String } ?? []
        return names.filter { name in
            let data = FileManager.default.contents(atPath: "\(directory)/\(name)") ?? Data()
            return data.range(of: Data(secret.utf8)) != nil
        }
    }

    /// Deleted means gone from disk (issue 38): after a data deletion, a deauthorize or a
    /// disconnect answers, no file under the file store's folder holds the connection's tokens
    /// (the one it has and the one it had before) or the id of the person who connected it.
    @Test(arguments: ["data-deletion", "deauthorize", "disconnect"])
    func whatIsDeletedIsGoneFromEveryFileOfTheStore(_ way: String) async throws {
        let world = try await W.world(backend: .file)
        // Connected twice (a new token replaced the first), with a WhatsApp number of its own.
        for token in ["page-token-first-202", "page-token-202"] {
            try await world.directory.connect(
                tenant: Self.salon, pageId: "202", instagramAccountId: "17841400000000202", pageAccessToken: token, connectedBy: "55500011122233")
        }
        try await world.directory.connectWhatsApp(
            tenant: Self.salon, phoneNumberId: "106540352242777", wabaId: "1022900000777", displayPhoneNumber: nil, token: "wa-token-777",
            connectedBy: "55500011122233")
        try await world.directory.recordConnector(userId: "55500011122233", tenant: Self.salon)
        let secrets = ["page-token-first-202", "page-token-202", "wa-token-777", "55500011122233"]
        for secret in secrets { #expect(try !Self.files(of: world, holding: secret).isEmpty, "\(secret) was never on disk") }

        let handler = Self.handler(world, now: world.clock.now)
        let signed = Self.signedRequest(userId: "55500011122233", issuedAt: world.clock.now)
        let answer: HTTPResponse
        switch way {
        case "disconnect":
            answer = try await handler.handle(HTTPRequest(method: "DELETE", path: "/external/meta/connections/B0300003/L1"), logger: Self.logger)
        default:
            answer = try await handler.handle(Self.callback("/external/meta/\(way)", signedRequest: signed), logger: Self.logger)
        }
        #expect(answer.status == 200)
        for secret in secrets {
            let files = try Self.files(of: world, holding: secret)
            #expect(files == [], "\(secret) is still on disk after \(way): \(files)")
        }
        await world.harness.shutdown()
    }
}

import Essentials
import Foundation
import KeyValueStore
import MetaMessaging
import MetaTenancy
import MetaWebhooks
import TestSupport
import Testing

/// Everything a function needs to run as a process in a test: a store of either backend
/// (fresh tables), a demo tenant, a Graph API stand-in, and the environment that ties them.
struct FunctionHarness {
    static let appSecret = "local-app-secret"
    static let token = "page-token-B0100001"
    static let pageId = "102030405060708"
    static let instagramId = "17841400000000001"
    static let phoneNumberId = "106540352242922"
    static let tenant = Tenant(businessId: "B0100001", locationId: "L0100001")

    let backend: StoreBackend
    let store: any KeyValueStore
    let tables: Tables
    let graph: GraphStandIn
    /// The world's clock: the file store's TTL goes by it, and so does every handler a test builds.
    let clock: TestClock
    var environment: [String: String]

    static func make(_ backend: StoreBackend, seedTenant: Bool = true) async throws -> FunctionHarness {
        let tables = Tables(
            credentials: Stores.unique("credentials"), identifiers: Stores.unique("identifiers"),
            processedMessages: Stores.unique("processed"), conversations: Stores.unique("conversations"))
        var environment = [
            "META_APP_SECRET": appSecret, "LOG_LEVEL": "debug",
            "DYNAMODB_EXTERNAL_CREDENTIALS_TABLE": tables.credentials.name,
            "DYNAMODB_PLATFORM_IDENTIFIERS_TABLE": tables.identifiers.name,
            "DYNAMODB_PROCESSED_MESSAGES_TABLE": tables.processedMessages.name,
            "DYNAMODB_CONVERSATIONS_TABLE": tables.conversations.name,
            // A child process measures the inline budget in real time, which a loaded machine
            // eats; the process suites test the contract, and the budget's rule is tested in
            // process on a clock the test advances (ReceiveRulesTests).
            "RECEIVE_INLINE_BUDGET_MS": "25000",
        ]
        let clock = TestClock()
        let store: any KeyValueStore
        switch backend {
        case .file:
            let directory = Stores.temporaryDirectory()
            store = try FileStore(directory: directory, tables: tables.all, now: clock.epochSeconds)
            environment["KV_BACKEND"] = "file"
            environment["KV_FILE_DIR"] = directory
        case .dynamodb:
            store = try await Stores.make(.dynamodb, tables: tables.all)
            let moto = try await MotoServer.shared.start()
            environment.merge(moto.environment) { $1 }
            environment["KV_BACKEND"] = "dynamodb"
            environment["DYNAMODB_ENDPOINT"] = moto.endpoint
        }
        let graph = try await GraphStandIn(appSecret: appSecret)
        await graph.allow(token: token, accounts: [pageId, phoneNumberId])
        environment["META_GRAPH_API_BASE_URL"] = graph.baseURL
        let harness = FunctionHarness(backend: backend, store: store, tables: tables, graph: graph, clock: clock, environment: environment)
        if seedTenant {
            try await harness.seedTenant()
            try await harness.openWindows()
        }
        return harness
    }

    func seedTenant(active: Bool = true) async throws {
        for (id, type, platform) in [
            (Self.pageId, "page", "messenger"), (Self.instagramId, "instagram_account", "instagram"),
            (Self.phoneNumberId, "whatsapp_phone_number", "whatsapp"),
        ] {
            try await store.put(
                tables.identifiers,
                item: [
                    "identifierId": .s(id), "identifierType": .s(type), "platform": .s(platform),
                    "businessId": .s(Self.tenant.businessId), "locationId": .s(Self.tenant.locationId),
                    "businessLocationId": .s("\(Self.tenant.businessId)#\(Self.tenant.locationId)"),
                ])
        }
        try await store.put(
            tables.credentials,
            item: [
                "businessId": .s(Self.tenant.businessId), "serviceType": .s("meta"), "isActive": .bool(active),
                "createdAt": .s(ISO8601.format(epochSeconds: clock.now)), "updatedAt": .s(ISO8601.format(epochSeconds: clock.now)),
                "credentials": .m([
                    "accessToken": .s(Self.token), "pageId": .s(Self.pageId), "instagramAccountId": .s(Self.instagramId),
                    "phoneNumberId": .s(Self.phoneNumberId),
                ]),
            ])
    }

    /// The customers the tests write to, with their service window open since `at` (epoch
    /// seconds): each platform's demo customer (the sample events' senders) and a few ids the
    /// tests use.
    static let customers: [(Platform, String)] = [
        (.instagram, "1234567890123456"), (.messenger, "6543210987654321"), (.whatsapp, "16505551234"),
        (.messenger, "42"), (.instagram, "42"), (.whatsapp, "1650"), (.instagram, "1"), (.messenger, "1"), (.whatsapp, "1"),
        (.messenger, "1234567890123456"), (.whatsapp, "1234567890123456"), (.messenger, "psid"),
    ]

    func openWindows(
        at epochSeconds: Int64? = nil, customers: [(Platform, String)] = FunctionHarness.customers,
        account: (Platform) -> String = { $0 == .whatsapp ? FunctionHarness.phoneNumberId : FunctionHarness.pageId }
    ) async throws {
        let epochSeconds = epochSeconds ?? clock.now
        for (platform, customer) in customers {
            try await store.put(
                tables.conversations,
                item: [
                    "conversationId": .s("\(platform.rawValue)#\(account(platform))#\(customer)"), "businessId": .s(Self.tenant.businessId),
                    "lastCustomerMessageAt": .number(epochSeconds), "expiresAt": .number(epochSeconds + 8 * 24 * 3600),
                ])
        }
    }

    func run(_ function: String, _ event: [UInt8], extra: [String: String] = [:]) async throws -> ProcessResult {
        try await Executables.run(function, environment: environment.merging(extra) { $1 }, stdin: event)
    }

    /// The demo location's connection: its own item, or the seed's single-connection item.
    func credentialsItem() async throws -> Item? {
        let business: AttributeValue = .s(Self.tenant.businessId)
        if let own = try await store.get(tables.credentials, key: ["businessId": business, "serviceType": .s("meta#\(Self.tenant.locationId)")]) {
            return own
        }
        return try await store.get(tables.credentials, key: ["businessId": business, "serviceType": .s("meta")])
    }

    func ledgerStatus(_ messageId: String) async throws -> String? {
        try await store.get(tables.processedMessages, key: ["messageId": .s(messageId)])?["status"]?.string
    }

    func shutdown() async { await graph.shutdown() }

    // MARK: Events

    /// The real time in epoch milliseconds, for events a child process reads (it has the real
    /// clock); a world's clock starts at it.
    static var now: Int64 { WallClock.epochMilliseconds() }

    /// An HTTP API event carrying `body` as Meta sends it, signed with `secret`.
    static func webhookEvent(_ body: String, secret: String = appSecret, signature: String?? = nil, base64: Bool = false) -> [UInt8] {
        webhookEvent(bytes: Array(body.utf8), secret: secret, signature: signature, base64: base64)
    }

    static func webhookEvent(bytes: [UInt8], secret: String = appSecret, signature: String?? = nil, base64: Bool = false) -> [UInt8] {
        var headers: [String: String] = ["content-type": "application/json", "user-agent": "facebookexternalua"]
        switch signature {
        case .none: headers["x-hub-signature-256"] = WebhookSignature(appSecret: secret).header(for: bytes)
        case .some(.some(let value)): headers["x-hub-signature-256"] = value
        case .some(.none): break
        }
        let body: String = base64 ? Data(bytes).base64EncodedString() : String(decoding: bytes, as: UTF8.self)
        let event: [String: Any] = [
            "version": "2.0", "rawPath": "/webhooks/meta", "rawQueryString": "", "headers": headers,
            "requestContext": ["http": ["method": "POST", "path": "/webhooks/meta"]],
            "body": body, "isBase64Encoded": base64,
        ]
        return Array((try? JSONSerialization.data(withJSONObject: event)) ?? Data())
    }

    /// One Instagram or Messenger messaging event, sent now (the real time: a child process reads
    /// the real clock, and a world's clock starts at it).
    static func messaging(
        object: String = "instagram", account: String = instagramId, time: Int64 = WallClock.epochMilliseconds(), events: [String]
    ) -> String {
        #"{"object":"\#(object)","entry":[{"id":"\#(account)","time":\#(time),"messaging":[\#(events.joined(separator: ","))]}]}"#
    }

    static func textEvent(
        mid: String, text: String, sender: String = "1234567890123456", timestamp: Int64 = WallClock.epochMilliseconds(),
        recipient: String = instagramId
    ) -> String {
        #"{"sender":{"id":"\#(sender)"},"recipient":{"id":"\#(recipient)"},"timestamp":\#(timestamp),"message":{"mid":"\#(mid)","text":"\#(text)"}}"#
    }
}

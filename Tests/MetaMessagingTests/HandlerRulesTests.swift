import Essentials
import Foundation
import FunctionRuntime
import KeyValueStore
import Logging
import MetaAgents
import MetaConnect
import MetaGraph
import MetaMessaging
import MetaTenancy
import MetaWebhooks
import NIOHTTPTransport
import Synchronization
import TestSupport
import Testing

/// The handlers' rules in process: each handler built from a file store in a temporary
/// folder, the Graph stand-in and a clock the test sets, then called directly. No child
/// process; the process-level suites keep the contract (stdin/stdout/exit codes, the Lambda
/// loop, races between processes).
@Suite struct HandlerRulesTests {
    typealias H = FunctionHarness

    struct World {
        let harness: H
        let directory: TenantDirectory
        let ledger: MessageLedger
        let clock: TestClock
        var receive: ReceiveHandler
        let send: SendHandler
        var process: ProcessHandler
        let conversations: Conversations

        /// An invocation with `seconds` left on this world's clock.
        func context(seconds: Int64 = 10) -> InvocationContext { HandlerRulesTests.context(seconds: seconds, clock: clock.clock) }
    }

    /// The Graph stand-in's app id: a Messenger echo carrying it is ours.
    static let appId = "100000000000001"

    static func world(
        backend: StoreBackend = .file, agent: any Agent = EchoAgent(), senderActions: Bool = true, agentTimeout: Duration = .seconds(3),
        inlineBudget: Duration = .milliseconds(4500), harness existing: H? = nil, inDoubt: MessageLedger.InDoubt = .doNotSendAgain,
        ledgerStore: ((any KeyValueStore) -> any KeyValueStore)? = nil, sharedThrottle: Bool = false,
        conversationStore: ((any KeyValueStore) -> any KeyValueStore)? = nil, agents: Agents? = nil, profileTimeout: Duration = .seconds(10)
    ) async throws -> World {
        let harness: H
        if let existing { harness = existing } else { harness = try await H.make(backend) }
        let clock = harness.clock
        let directory = TenantDirectory(store: harness.store, tables: harness.tables)
        let ledger = MessageLedger(
            store: ledgerStore?(harness.store) ?? harness.store, table: harness.tables.processedMessages, clock: clock.clock, inDoubt: inDoubt)
        let graph = GraphClient(transport: NIOHTTPTransport(), baseURL: harness.graph.baseURL, appSecret: H.appSecret)
        // One execution's memory of Meta's throttles, shared through the store when asked.
        let throttle = AccountThrottle(clock: clock.clock)
        let sender = MessageSender(graph: graph, throttle: throttle, clock: clock.clock)
        let conversations = Conversations(
            store: conversationStore?(harness.store) ?? harness.store, table: harness.tables.conversations, clock: clock.clock)
        var responder = MessageResponder(
            agent: agent, sender: sender, directory: directory, ledger: ledger, agentTimeout: agentTimeout, conversations: conversations,
            // Budgets wide enough for a loaded test machine; the tests of the bounds hang longer.
            presence: senderActions ? Presence(graph: graph, budget: .seconds(2), throttle: throttle, clock: clock.clock) : nil,
            // The profile lookup's timeout is network time (a transport timeout), not the test's
            // clock: roomy here, so a rule that stores the name never depends on how fast a loaded
            // machine answers on loopback; its own bound is tested with a short one.
            profiles: CustomerProfiles(graph: graph, timeout: profileTimeout, throttle: throttle))
        responder.agents = agents
        if sharedThrottle {
            responder.sharedThrottle = SharedThrottle(store: harness.store, table: harness.tables.processedMessages, throttle: throttle)
        }
        // The demo customers' windows, open at the test clock's time.
        try await harness.openWindows(at: clock.now)
        return World(
            harness: harness, directory: directory, ledger: ledger, clock: clock,
            receive: ReceiveHandler(
                signature: WebhookSignature(appSecret: H.appSecret), directory: directory, ledger: ledger, responder: responder, inlineBudget: inlineBudget,
                clock: clock.clock, conversations: conversations, appId: appId, echoRecheckDelay: .milliseconds(50)),
            send: SendHandler(directory: directory, sender: sender, ledger: ledger, conversations: conversations),
            process: ProcessHandler(directory: directory, ledger: ledger, responder: responder), conversations: conversations)
    }

    /// An invocation with `seconds` left on the world's clock (the system's without one).
    static func context(seconds: Int64 = 10, clock: WallClock = .system) -> InvocationContext {
        InvocationContext(requestID: UUID().uuidString, deadline: clock.instant() + .seconds(seconds), logger: Logger(label: "test"), clock: clock)
    }

    static func webhook(_ body: String, signature: String? = nil) -> HTTPRequest {
        let bytes = Array(body.utf8)
        return HTTPRequest(
            method: "POST", path: "/webhooks/meta",
            headers: HTTPHeaders([("X-Hub-Signature-256", signature ?? WebhookSignature(appSecret: H.appSecret).header(for: bytes))]), body: bytes)
    }

    /// A webhook handled as the runtime handles it: the answer, then what the handler left for
    /// after the answer.
    static func deliver(_ world: World, _ body: String) async throws -> HTTPResponse {
        let context = world.context()
        let response = try await world.receive.handle(webhook(body), context: context)
        await context.afterResponse.run(before: context.clock.instant() + .seconds(5), clock: context.clock)
        return response
    }

    static func summary(_ response: HTTPResponse) -> [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(response.body.utf8))) as? [String: Any] ?? [:]
    }

    @Test func receiveAnswersOnceAndRefusesWhatIsNotMetas() async throws {
        let world = try await Self.world()
        let body = H.messaging(events: [H.textEvent(mid: "m_rule_1", text: "hello")])
        let first = try await world.receive.handle(Self.webhook(body), context: world.context())
        #expect(first.status == 200)
        #expect(Self.summary(first)["answered"] as? Int == 1)
        #expect(try await world.ledger.status(of: "m_rule_1") == .answered)
        let sent = await world.harness.graph.messages
        #expect(sent.count == 1)
        #expect(sent.first?.token == H.token)

        let again = try await world.receive.handle(Self.webhook(body), context: world.context())
        #expect(Self.summary(again)["duplicates"] as? Int == 1)
        #expect(await world.harness.graph.messages.count == 1)

        await #expect(throws: RequestRefused(401, code: .invalidSignature, "the X-Hub-Signature-256 header does not sign this body with the app secret")) {
            _ = try await world.receive.handle(Self.webhook(body, signature: "sha256=" + String(repeating: "0", count: 64)), context: world.context())
        }
        do {
            _ = try await world.receive.handle(Self.webhook(#"{"object":"instagram","object":"page","entry":[]}"#), context: world.context())
            Issue.record("a repeated key was accepted")
        } catch {
            #expect(error.status == 400)
            #expect(error.code == "invalid_payload")
        }
        await world.harness.shutdown()
    }

    /// One webhook, four customers: the agent fails, answers garbage, answers, and takes longer
    /// than its timeout. Each turn stands alone: the good one is answered, the others are
    /// recorded failed, none is handed back. In process, with a budget no loaded machine runs
    /// out of (the process-level version ran out of Meta's 4.5 s when the whole suite loaded
    /// the machine, and handed the last turn back as it should then).
    @Test func aFailingOrSlowAgentNeverStopsTheOtherTurns() async throws {
        let agentServer = try await LoopbackServer { request in
            switch request.jsonBody?["text"] as? String {
            case "fail": return .json(500, #"{"message":"boom"}"#)
            case "slow":
                try? await Task.sleep(for: .seconds(10))
                return .json(200, #"{"reply":"too late"}"#)
            case "garbage": return LoopbackServer.Response(status: 200, body: Array("<html>".utf8))
            default: return .json(200, #"{"reply":"fine"}"#)
            }
        }
        let world = try await Self.world(
            agent: HTTPAgent(url: agentServer.baseURL, transport: NIOHTTPTransport()), senderActions: false,
            // The four turns run at once: the good one's call shares the loaded machine with the
            // others, so the agent's timeout (the slow one's end) leaves it seconds, not 0.5.
            agentTimeout: .seconds(3), inlineBudget: .seconds(30))
        try await world.harness.openWindows(at: world.clock.now, customers: ["c1", "c2", "c3", "c4"].map { (.instagram, $0) })
        let body = H.messaging(events: [
            H.textEvent(mid: "m_fail", text: "fail", sender: "c1", timestamp: H.now),
            H.textEvent(mid: "m_garbage", text: "garbage", sender: "c2", timestamp: H.now + 1),
            H.textEvent(mid: "m_fine", text: "fine", sender: "c3", timestamp: H.now + 2),
            H.textEvent(mid: "m_slow", text: "slow", sender: "c4", timestamp: H.now + 3),
        ])
        let response = try await Self.deliver(world, body)
        #expect(response.status == 200)
        #expect(Self.summary(response)["answered"] as? Int == 1)
        #expect(Self.summary(response)["failed"] as? Int == 3)
        let texts = await world.harness.graph.messages.compactMap { ($0.body?["message"] as? [String: Any])?["text"] as? String }
        #expect(texts == ["fine"])
        for mid in ["m_fail", "m_garbage", "m_slow"] { #expect(try await world.ledger.status(of: mid) == .failed, "\(mid)") }
        #expect(try await world.ledger.status(of: "m_fine") == .answered)
        await agentServer.shutdown()
        await world.harness.shutdown()
    }

    @Test func aLeaseThatRunsOutLetsAnotherClaimerFinish() async throws {
        let world = try await Self.world()
        #expect(try await world.ledger.claim("m_lease", businessId: "B", owner: "first", as: .answering) == .claimed)
        #expect(try await world.ledger.claim("m_lease", businessId: "B", owner: "second", as: .answering) == .held(.answering))
        world.clock.advance(61)
        #expect(try await world.ledger.claim("m_lease", businessId: "B", owner: "second", as: .answering) == .claimed)
        #expect(try await world.ledger.finish("m_lease", owner: "first", status: .answered) == false)
        #expect(try await world.ledger.finish("m_lease", owner: "second", status: .answered))
        await world.harness.shutdown()
    }

    @Test func aTurnsOutcomeAndItsReplysIdGoTogetherTheIdFirst() async throws {
        // A store without batches (as DynamoDB): the writes go one by one, in the batch's order.
        let tables = Tables()
        let recording = RecordingStore(try FileStore(directory: Stores.temporaryDirectory(), tables: tables.all))
        let ledger = MessageLedger(store: recording, table: tables.processedMessages)
        for mid in ["m_turn_1", "m_turn_2"] { _ = try await ledger.claim(mid, businessId: "B", owner: "me", as: .answering) }
        _ = try await ledger.claim("m_turn_3", businessId: "B", owner: "someone else", as: .answering)
        recording.operations.withLock { $0 = [] }
        let outcome = try await ledger.finish(
            [("m_turn_1", "me"), ("m_turn_2", "me"), ("m_turn_3", "me")], status: .answered,
            sent: .init(sentId: "m_SENT9", inReplyTo: "m_turn_2", businessId: "B"))
        // The reply's id first, so a quick echo of the reply finds it as soon as it did alone.
        #expect(recording.operations.withLock { $0 } == ["put sent:m_SENT9", "update m_turn_1", "update m_turn_2", "update m_turn_3"])
        #expect(outcome.claims.map { try? $0.get() } == [true, true, false])
        #expect(outcome.sent.map { (try? $0.get()) != nil } == true)
        #expect(try await ledger.wasSent("m_SENT9"))
        #expect(try await ledger.status(of: "m_turn_2") == .answered)
        #expect(try await ledger.status(of: "m_turn_3") == .answering)
    }

    /// The deadline is on the world's clock: a 503 that comes back with less time left than a
    /// backoff and a whole call need (1 s, less the 200 ms send keeps back) is reported, not
    /// retried; with time left, the same 503 is retried and the message goes. No real time is
    /// waited on (it was once a process test, whose budget raced the process's start-up).
    @Test func aDeadlineThatLeavesNoTimeForARetry() async throws {
        let world = try await Self.world()
        let unavailable = GraphStandIn.error(status: 503, code: 2, message: "Service temporarily unavailable", transient: true)
        let request = try SendHandler.parse(["businessId": "B0100001", "platform": "instagram", "recipientId": "1234567890123456", "message": ["text": "x"]])
        await world.harness.graph.script([unavailable], pathSuffix: "/messages")
        let roomy = try await world.send.send(request, context: world.context(seconds: 10))
        #expect(roomy.count == 1)
        #expect(await world.harness.graph.calls.filter { $0.path.hasSuffix("/messages") }.count == 2)
        let context = world.context(seconds: 1)
        await world.harness.graph.script([unavailable], pathSuffix: "/messages")
        do {
            _ = try await world.send.send(request, context: context)
            Issue.record("a 503 was retried into success or ignored")
        } catch {
            #expect(error.errorType == "GraphAPIError")
            #expect(error.graph?.code == 2)
        }
        #expect(await world.harness.graph.calls.filter { $0.path.hasSuffix("/messages") }.count == 3)
        await world.harness.shutdown()
    }

    @Test func sendValidatesBeforeAnyCallAndMapsEveryFailure() async throws {
        let world = try await Self.world()
        let cases: [(JSON, SendError)] = [
            (["platform": "instagram"], .missingBusinessId("businessId is required")),
            (["businessId": "B0100001", "platform": "fax"], .unknownPlatform("platform must be one of instagram, messenger, whatsapp")),
            (
                ["businessId": "B0100001", "platform": "instagram", "recipientId": "1"],
                .emptyMessage("message must be an object with text or an attachment")
            ),
            (["businessId": .integer(5), "platform": "instagram"], .invalidInput("businessId must be a string")),
        ]
        for (input, expected) in cases {
            #expect(throws: expected) { try SendHandler.parse(input) }
        }
        let unknown = try SendHandler.parse(["businessId": "B0999999", "platform": "instagram", "recipientId": "1", "message": ["text": "hi"]])
        await #expect(throws: SendError.unknownTenant("no Meta credentials for business B0999999")) {
            _ = try await world.send.send(unknown, context: world.context())
        }
        #expect(SendError.unknownTenant("").status == 404)
        #expect(SendError.tokenExpired(GraphError(kind: .graph, code: 190, message: "")).status == 409)
        #expect(await world.harness.graph.calls.isEmpty)

        let good = try SendHandler.parse(["businessId": "B0100001", "platform": "whatsapp", "recipientId": "16505551234", "message": ["text": "hi"]])
        let sent = try #require(await world.send.send(good, context: world.context()).first)
        #expect(sent.messageId.hasPrefix("wamid."))
        await world.harness.graph.script([GraphStandIn.error(code: 190, message: "Error validating access token")], pathSuffix: "/messages")
        do {
            _ = try await world.send.send(good, context: world.context())
            Issue.record("an expired token was not reported")
        } catch {
            #expect(error.errorType == "TokenExpired")
            #expect(error.graph?.code == 190)
        }
        #expect(try await world.directory.credentials(businessId: "B0100001")?.isActive == false)
        await world.harness.shutdown()
    }

    @Test func processAnswersQueuedMessagesAndReportsWhatToRetry() async throws {
        let world = try await Self.world()
        let message = InboundMessage(platform: .instagram, messageId: "m_queued", accountId: H.instagramId, senderId: "42", timestamp: 1, content: .text("hi"))
        _ = try await world.ledger.claim("m_queued", businessId: H.tenant.businessId, owner: "receive", as: .queued)
        let body = String(decoding: try JSONEncoder().encode(AcceptedMessage(tenant: H.tenant, message: message)), as: UTF8.self)
        let records: [JSON] = [
            ["messageId": "r1", "body": .string(body), "attributes": ["MessageGroupId": "g1"]],
            ["messageId": "r2", "body": .string(body), "attributes": ["MessageGroupId": "g1"]],
            ["messageId": "r3", "body": "not an accepted message", "attributes": ["MessageGroupId": "g2"]],
        ]
        let report = await world.process.handle(records: records, context: world.context())
        #expect(report.answered == 1)
        #expect(report.skipped == 1)  // r2: the same message, already answered
        #expect(report.failures == ["r3"])
        #expect(try await world.ledger.status(of: "m_queued") == .answered)
        #expect(await world.harness.graph.messages.count == 1)
        await world.harness.shutdown()
    }

    @Test func verifyAndAuthURLRefuseInTheirOwnWords() throws {
        let verify = VerifyHandler(verifyToken: "local-verify-token")
        let logger = Logger(label: "test")
        let good = HTTPRequest(
            method: "GET", path: "/webhooks/meta", query: ["hub.mode": ["subscribe"], "hub.verify_token": ["local-verify-token"], "hub.challenge": ["42"]])
        #expect(try verify.handle(good, logger: logger).body == "42")
        var wrong = good
        wrong.query["hub.verify_token"] = ["nope"]
        #expect(throws: RequestRefused(403, code: .forbidden, "the verify token does not match")) { try verify.handle(wrong, logger: logger) }

        let config = OAuthConfig(
            appId: "100000000000001", redirectURI: "https://example.com/cb", allowedRedirectURIs: [], scopes: "pages_messaging",
            stateSecret: "local-state-secret-0123456789abcdef", dialogBaseURL: "https://www.facebook.com", graphVersion: "v25.0",
            postConnectRedirectURI: nil)
        let authURL = AuthURLHandler(config: config, clock: TestClock().clock)
        let request = HTTPRequest(method: "GET", path: "/external/meta/auth-url", query: ["businessId": ["B1"], "locationId": ["L1"]])
        #expect(try authURL.handle(request, logger: logger).status == 200)
        var foreign = request
        foreign.query["redirectUri"] = ["https://evil.example/cb"]
        #expect(throws: RequestRefused.self) { try authURL.handle(foreign, logger: logger) }
    }
}

/// A store that passes every call to another and records the writes in order; it has no batches
/// of its own, so `write` is the port's default, one request after another.
final class RecordingStore: KeyValueStore {
    let inner: any KeyValueStore
    let operations = Mutex<[String]>([])
    /// Reads, counted apart from the writes' order.
    let gets = Mutex(0)
    /// Reads by table name.
    let getsOf = Mutex<[String: Int]>([:])

    init(_ inner: any KeyValueStore) { self.inner = inner }

    func forgetHistory(_ table: TableSchema) async throws(KeyValueError) { try await inner.forgetHistory(table) }

    private func note(_ operation: String, _ key: Item) {
        operations.withLock { $0.append("\(operation) \(key.values.compactMap(\.string).sorted().joined(separator: ","))") }
    }

    func get(_ table: TableSchema, key: Item) async throws(KeyValueError) -> Item? {
        gets.withLock { $0 += 1 }
        getsOf.withLock { $0[table.name, default: 0] += 1 }
        return try await inner.get(table, key: key)
    }

    func put(_ table: TableSchema, item: Item, condition: Condition?) async throws(KeyValueError) {
        note("put", table.key(of: item) ?? [:])
        try await inner.put(table, item: item, condition: condition)
    }

    func update(_ table: TableSchema, key: Item, set: Item, remove: [String], condition: Condition?) async throws(KeyValueError) -> Item {
        note("update", key)
        return try await inner.update(table, key: key, set: set, remove: remove, condition: condition)
    }

    func increment(_ table: TableSchema, key: Item, attribute: String, by amount: Int64, set: Item) async throws(KeyValueError) -> Item {
        note("increment", key)
        return try await inner.increment(table, key: key, attribute: attribute, by: amount, set: set)
    }

    func delete(_ table: TableSchema, key: Item) async throws(KeyValueError) {
        note("delete", key)
        try await inner.delete(table, key: key)
    }

    func query(_ table: TableSchema, partitionKey value: AttributeValue) async throws(KeyValueError) -> [Item] {
        try await inner.query(table, partitionKey: value)
    }

    func query(_ table: TableSchema, index: String, partitionKey value: AttributeValue, sortKeyAtMost: Int64?) async throws(KeyValueError) -> [Item] {
        try await inner.query(table, index: index, partitionKey: value, sortKeyAtMost: sortKeyAtMost)
    }

    func scan(_ table: TableSchema, after: Item?, limit: Int) async throws(KeyValueError) -> ScanPage {
        try await inner.scan(table, after: after, limit: limit)
    }
}

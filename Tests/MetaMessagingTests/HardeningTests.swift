import Essentials
import Foundation
import FunctionRuntime
import KeyValueStore
import MetaMessaging
import MetaTenancy
import MetaWebhooks
import SafeJSON
import TestSupport
import Testing

/// Regression tests for each class of defect of the hardening issue, with the inputs that
/// used to kill a process. Where the failure was a process dying, the test runs the process.
@Suite struct HardeningTests {
    typealias H = FunctionHarness

    /// `depth` nested arrays, optionally inside a prefix such as `{"a":`.
    static func deep(_ depth: Int, prefix: String = "", suffix: String = "") -> String {
        prefix + String(repeating: "[", count: depth) + String(repeating: "]", count: depth) + suffix
    }

    static let depths = [129, 510, 512, 513, 1000, 100_000]

    static func survived(_ result: ProcessResult, _ what: String, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(!result.signalled, "\(what): killed by signal \(result.exitCode)", sourceLocation: sourceLocation)
        #expect(!result.timedOut, "\(what): hung", sourceLocation: sourceLocation)
    }

    // MARK: 1. Deep nesting

    @Test func theReaderRefusesDeepLargeAndRepeatedDocuments() throws {
        for depth in Self.depths {
            #expect(throws: JSONReadError.self) { try JSONReader.read(Array(Self.deep(depth).utf8)) }
            #expect(throws: JSONReadError.self) { try JSONReader.read(Array(Self.deep(depth, prefix: #"{"a":"#, suffix: "}").utf8)) }
            #expect(throws: (any Error).self) { try JSON.parse(Array(Self.deep(depth, prefix: #"{"a":"#, suffix: "}").utf8)) }
        }
        _ = try JSONReader.read(Array(Self.deep(128).utf8))
        #expect(throws: JSONReadError.self) { try JSONReader.read(Array("[1,2,3]".utf8), limits: JSONLimits(maxBytes: 6)) }
        #expect(throws: JSONReadError.self) { try JSONReader.read(Array(#"{"a":1,"b":2,"a":3}"#.utf8)) }
        // A large object is checked by a set: a repeat far apart is still found.
        let many = (0..<5000).map { #""k\#($0)":\#($0)"# }.joined(separator: ",")
        _ = try JSONReader.read(Array("{\(many)}".utf8))
        #expect(throws: JSONReadError.self) { try JSONReader.read(Array("{\(many),\"k17\":0}".utf8)) }
        // Numbers keep their text: one out of every range reads, and converts to nothing.
        let huge = try JSON.parse(Array("[1e400, 9223372036854775808, 1.5]".utf8))
        #expect(huge.array?.allSatisfy { $0.int64 == nil && $0.exactInt64 == nil } == true)
        #expect(huge.array?.first?.finiteDouble == nil)
    }

    struct Typed: Decodable, Equatable {
        let count: Int
        let small: UInt8?
        let ratio: Double?
        let names: [String]
    }

    @Test func typedDecodingChecksEveryNumber() throws {
        let good = try SafeJSON.decode(Typed.self, from: Array(#"{"count":1e3,"small":255,"ratio":0.5,"names":["a"]}"#.utf8))
        #expect(good == Typed(count: 1000, small: 255, ratio: 0.5, names: ["a"]))
        for bad in [
            #"{"count":9223372036854775808,"names":[]}"#, #"{"count":1.5,"names":[]}"#, #"{"count":1e400,"names":[]}"#,
            #"{"count":1,"small":256,"names":[]}"#, #"{"count":1,"ratio":1e999,"names":[]}"#, #"{"count":"1","names":[]}"#,
            #"{"count":1,"names":[1]}"#, #"{"names":[]}"#, #"{"count":1,"count":2,"names":[]}"#,
            Self.deep(600, prefix: #"{"count":1,"names":"#, suffix: "}"),
        ] {
            #expect(throws: (any Error).self, "\(bad.prefix(60))") { try SafeJSON.decode(Typed.self, from: Array(bad.utf8)) }
        }
    }

    @Test func deeplyNestedInputIsAClearErrorInEveryFunction() async throws {
        let harness = try await H.make(.file)
        for depth in [512, 100_000] {
            let deepSend = Self.deep(depth, prefix: #"{"businessId":"B0100001","platform":"instagram","recipientId":"1","message":"#, suffix: "}")
            let send = try await harness.run("send", Array(deepSend.utf8))
            Self.survived(send, "send \(depth)")
            #expect(send.exitCode == 1)
            #expect(send.json?["errorType"] as? String == "InvalidInput")
            let bare = try await harness.run("send", Array(Self.deep(depth).utf8))
            Self.survived(bare, "send bare \(depth)")
            #expect(bare.exitCode == 1)

            let receive = try await harness.run("receive", H.webhookEvent(Self.deep(depth, prefix: #"{"object":"instagram","entry":"#, suffix: "}")))
            Self.survived(receive, "receive \(depth)")
            #expect(receive.statusCode == 400)

            let record: [String: Any] = [
                "messageId": "r-deep", "body": Self.deep(depth, prefix: #"{"tenant":"#, suffix: "}"),
                "attributes": ["MessageGroupId": "g"],
            ]
            let process = try await harness.run("process", Array(try JSONSerialization.data(withJSONObject: ["Records": [record]])))
            Self.survived(process, "process \(depth)")
            #expect(process.exitCode == 0)
            #expect((process.json?["batchItemFailures"] as? [[String: String]])?.first?["itemIdentifier"] == "r-deep")
            let deepEvent = try await harness.run("process", Array(Self.deep(depth).utf8))
            Self.survived(deepEvent, "process event \(depth)")
            #expect(deepEvent.exitCode == 1)

            let verify = try await harness.run(
                "verify", Array(Self.deep(depth, prefix: #"{"a":"#, suffix: "}").utf8),
                extra: ["META_WEBHOOK_VERIFY_TOKEN": "local-verify-token"])
            Self.survived(verify, "verify \(depth)")
            #expect(verify.exitCode == 1)
        }
        #expect(await harness.graph.messages.isEmpty)
        await harness.shutdown()
    }

    @Test func deeplyNestedAnswersFromGraphAndTheAgentAreFailuresNotCrashes() async throws {
        let harness = try await H.make(.file)
        let deepAnswer = LoopbackServer.Response(
            status: 200, headers: [("Content-Type", "application/json")],
            body: Array(Self.deep(512, prefix: #"{"message_id":"#, suffix: "}").utf8))
        await harness.graph.script([deepAnswer], pathSuffix: "/messages")
        let send = try await harness.run("send", SendTests.input(message: ["text": "hi"]))
        Self.survived(send, "send with a deep Graph answer")
        #expect(send.exitCode == 1)

        let agent = try await LoopbackServer { _ in
            LoopbackServer.Response(
                status: 200, headers: [("Content-Type", "application/json")],
                body: Array(Self.deep(512, prefix: #"{"reply":"#, suffix: "}").utf8))
        }
        let receive = try await harness.run(
            "receive", H.webhookEvent(H.messaging(events: [H.textEvent(mid: "m_deep_agent", text: "hi")])),
            extra: ["AGENT_BACKEND": "http", "AGENT_HTTP_URL": agent.baseURL])
        Self.survived(receive, "receive with a deep agent answer")
        #expect(receive.statusCode == 200)
        #expect(receive.bodyJSON?["failed"] as? Int == 1)
        #expect(try await harness.ledgerStatus("m_deep_agent") == "failed")
        await agent.shutdown()
        await harness.shutdown()
    }

    @Test func aDeeplyNestedTableLineIsACorruptTableLeftAsItIs() async throws {
        let directory = Stores.temporaryDirectory()
        let table = TableSchema(name: "deep-table", partitionKey: "id")
        let path = "\(directory)/deep-table.jsonl"
        let content = Self.deep(600, prefix: #"{"Item":{"id":{"S":"x"},"n":{"L":"#, suffix: "}}}") + "\n"
        try content.write(toFile: path, atomically: true, encoding: .utf8)
        let store = try FileStore(directory: directory, tables: [table])
        await #expect(throws: KeyValueError.self) { try await store.get(table, key: ["id": .s("x")]) }
        #expect(try String(contentsOfFile: path, encoding: .utf8) == content)
    }

    // MARK: 2. Numbers from outside

    @Test func anOverflowingWhatsAppTimestampIsAnInvalidEvent() async throws {
        let harness = try await H.make(.file)
        for timestamp in ["9223372036854776", "-1", "1e30", "99999999999999999999"] {
            let body =
                #"{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550001111","phone_number_id":"\#(H.phoneNumberId)"},"messages":[{"from":"16505551234","id":"wamid.T\#(timestamp)","timestamp":"\#(timestamp)","type":"text","text":{"body":"hi"}}],"statuses":[{"id":"wamid.S","status":"read","timestamp":"\#(timestamp)","recipient_id":"1"}]}}]}]}"#
            let result = try await harness.run("receive", H.webhookEvent(body))
            Self.survived(result, "receive timestamp \(timestamp)")
            #expect(result.statusCode == 200)
            #expect(result.bodyJSON?["invalid"] as? Int == 2)
        }
        // Messenger's millisecond timestamp, likewise.
        let messenger = try await harness.run(
            "receive",
            H.webhookEvent(
                H.messaging(events: [
                    H.textEvent(mid: "m_huge_time", text: "hi", timestamp: Int64.max)
                ])))
        Self.survived(messenger, "receive huge messenger timestamp")
        #expect(messenger.bodyJSON?["invalid"] as? Int == 1)
        #expect(await harness.graph.messages.isEmpty)
        await harness.shutdown()
    }

    // MARK: 3. Configuration numbers

    @Test func numericVariablesAreParsedStrictly() async throws {
        let harness = try await H.make(.file)
        let event = TestEvents.load("verify.json")
        for value in ["nan", "inf", "-inf", "1e300", "abc", "-5", "0", "1e2", " 5"] {
            let result = try await harness.run("verify", event, extra: ["META_WEBHOOK_VERIFY_TOKEN": "local-verify-token", "FUNCTION_TIMEOUT_SECONDS": value])
            Self.survived(result, "FUNCTION_TIMEOUT_SECONDS=\(value)")
            #expect(result.exitCode == 2, "FUNCTION_TIMEOUT_SECONDS=\(value)")
            #expect(result.stderr.split(separator: "\n").count == 1)
            #expect(result.stderr.contains("FUNCTION_TIMEOUT_SECONDS"))
            #expect(result.stdout.isEmpty)
        }
        let fine = try await harness.run("verify", event, extra: ["META_WEBHOOK_VERIFY_TOKEN": "local-verify-token", "FUNCTION_TIMEOUT_SECONDS": "2.5"])
        #expect(fine.exitCode == 0)
        for value in ["abc", "0", "-1", "1.5", "9223372036854775807", "99999999999999999999"] {
            let result = try await harness.run("receive", H.webhookEvent("{}"), extra: ["AGENT_TIMEOUT_MS": value])
            Self.survived(result, "AGENT_TIMEOUT_MS=\(value)")
            #expect(result.exitCode == 2, "AGENT_TIMEOUT_MS=\(value)")
            #expect(result.stderr.contains("AGENT_TIMEOUT_MS"))
        }
        await harness.shutdown()
    }

    // MARK: 4. The inline budget

    @Test func aSlowAgentLosesNoMessageOfABusyDelivery() async throws {
        let harness = try await H.make(.file)
        let agent = try await LoopbackServer { request in
            try? await Task.sleep(for: .milliseconds(1100))
            return .json(200, #"{"reply":"re: \#(request.jsonBody?["text"] as? String ?? "")"}"#)
        }
        // Six customers: six turns, more than one delivery's budget holds.
        let events = (1...6).map {
            H.textEvent(mid: "m_busy_\($0)", text: "message \($0)", sender: "busy-customer-\($0)", timestamp: WallClock.epochMilliseconds() + Int64($0))
        }
        let delivery = H.webhookEvent(H.messaging(events: events))
        var statuses: [Int] = []
        // Meta redelivers until it gets its 200.
        // The agent's own timeout is another rule (HandlerRulesTests): here it has room, so six
        // turns at once on a loaded machine are never failed for a slow answer from loopback.
        for _ in 0..<8 {
            let result = try await harness.run(
                "receive", delivery, extra: ["AGENT_BACKEND": "http", "AGENT_HTTP_URL": agent.baseURL, "AGENT_TIMEOUT_MS": "20000"])
            Self.survived(result, "receive")
            #expect(result.bodyJSON?["failed"] as? Int == 0, "\(result.stderr.suffix(800))")
            statuses.append(result.statusCode ?? 0)
            if result.statusCode == 200 { break }
        }
        #expect(statuses.last == 200)
        #expect(statuses.dropLast().allSatisfy { $0 == 500 })
        let texts = await harness.graph.messages.compactMap { ($0.body?["message"] as? [String: Any])?["text"] as? String }
        #expect(texts.sorted() == (1...6).map { "re: message \($0)" })
        for index in 1...6 { #expect(try await harness.ledgerStatus("m_busy_\(index)") == "answered") }
        await agent.shutdown()
        await harness.shutdown()
    }

    @Test func processHandsBackWhatItHasNoTimeFor() async throws {
        let harness = try await H.make(.file)
        let agent = try await LoopbackServer { _ in
            try? await Task.sleep(for: .milliseconds(1100))
            return .json(200, #"{"reply":"done"}"#)
        }
        let ledger = MessageLedger(store: harness.store, table: harness.tables.processedMessages)
        var records: [[String: Any]] = []
        for index in 1...4 {
            let message = InboundMessage(
                platform: .instagram, messageId: "m_proc_\(index)", accountId: H.instagramId,
                senderId: "customer-\(index)", timestamp: H.now, content: .text("hello \(index)"))
            _ = try await ledger.claim(message.messageId, businessId: H.tenant.businessId, owner: "receive", as: .queued)
            let body = try JSONEncoder().encode(AcceptedMessage(tenant: H.tenant, message: message))
            records.append([
                "messageId": "r\(index)", "body": String(decoding: body, as: UTF8.self),
                "attributes": ["MessageGroupId": "group-\(index)"],
            ])
        }
        let event = Array(try JSONSerialization.data(withJSONObject: ["Records": records]))
        // 3 s of deadline, two conversations at a time: room for two answers, not four.
        let result = try await harness.run(
            "process", event,
            extra: [
                "AGENT_BACKEND": "http", "AGENT_HTTP_URL": agent.baseURL, "FUNCTION_TIMEOUT_SECONDS": "3", "TURN_CONCURRENCY": "2",
            ])
        Self.survived(result, "process")
        let failures = QueueDispatchTests.failures(result)
        let answered = await harness.graph.messages.count
        #expect(!failures.isEmpty)
        #expect(answered + failures.count == 4)
        for index in 1...4 {
            let status = try await harness.ledgerStatus("m_proc_\(index)")
            #expect(status != "failed")
            #expect((status == "answered") == !failures.contains("r\(index)"))
        }
        await agent.shutdown()
        await harness.shutdown()
    }

    // MARK: 5 and 6. oauth-callback: paging links and Meta's error text

    @Test func aPagingLinkToAnotherHostIsNotFollowed() async throws {
        let harness = try await H.make(.file, seedTenant: false)
        await harness.graph.configure(OAuthTests.world())
        let elsewhere = try await LoopbackServer { _ in .json(200, #"{"data":[]}"#) }
        for next in [
            "\(elsewhere.baseURL)/v25.0/me/accounts?after=1", "http://localhost:\(elsewhere.port)/v25.0/me/accounts",
            "\(harness.graph.baseURL).evil.example/v25.0/me/accounts", "\(harness.graph.baseURL)@127.0.0.2/v25.0/x",
        ] {
            await harness.graph.script(
                [.json(200, #"{"data":[{"id":"202","name":"Bistro","access_token":"page-token-202"}],"paging":{"next":"\#(next)"}}"#)],
                pathSuffix: "/me/accounts")
            let result = try await OAuthTests.callback(harness, ["code": "good-code", "state": try await OAuthTests.state(harness)])
            Self.survived(result, "oauth-callback")
            #expect(result.statusCode == 502, "\(next)")
            #expect(!result.stdout.contains("long-user-token"))
        }
        #expect(elsewhere.acceptedConnections == 0)
        await elsewhere.shutdown()
        await harness.shutdown()
    }

    @Test func metaErrorTextStaysInTheLog() async throws {
        let harness = try await H.make(.file, seedTenant: false)
        await harness.graph.configure(OAuthTests.world())
        await harness.graph.script(
            [GraphStandIn.error(code: 100, message: "<script>alert(1)</script> access_token=EAAGleaked0123456789abcdefghijklmnop")],
            pathSuffix: "/oauth/access_token")
        let result = try await OAuthTests.callback(harness, ["code": "good-code", "state": try await OAuthTests.state(harness)])
        #expect(result.statusCode == 400)
        #expect(result.bodyJSON?["error"] as? String == "code_exchange_failed")
        let message = try #require(result.bodyJSON?["message"] as? String)
        #expect(message.contains("fbtrace_id AbCdEfGh123"))
        #expect(!result.stdout.contains("script"))
        #expect(!result.stdout.contains("EAAG"))
        #expect(result.stderr.contains("alert(1)"))
        #expect(!result.stderr.contains("EAAGleaked"))
        await harness.shutdown()
    }

    @Test func theLogRedactsWhatLooksLikeACredential() {
        let redaction = Redaction(secrets: ["my-app-secret-value"])
        let cases: [(String, String)] = [
            ("GET /x?access_token=abc123&limit=2", "GET /x?access_token=[redacted]&limit=2"),
            ("client_secret=my-app-secret-value&code=AQBxyz", "client_secret=[redacted]&code=[redacted]"),
            ("Authorization: Bearer EAAB123", "Authorization: Bearer [redacted]"),
            ("token EAAGm0PX4ZCpsBAKZB1234567890abcdefghij was refused", "token [redacted] was refused"),
            ("IGAAx1234567890abcdefghijklmnopqrstuvwxyz", "[redacted]"),
            ("the secret is my-app-secret-value.", "the secret is [redacted]."),
            ("an ordinary line about a barcode= field", "an ordinary line about a barcode= field"),
            ("Echo: hello", "Echo: hello"),
        ]
        for (input, expected) in cases { #expect(redaction.scrub(input) == expected) }
    }

    // MARK: 7. The file store

    @Test func tablesAreCreatedPrivateAndLinksAreRefused() async throws {
        let parent = Stores.temporaryDirectory()
        let directory = "\(parent)/new/store"
        let table = TableSchema(name: "private-table", partitionKey: "id")
        let store = try FileStore(directory: directory, tables: [table])
        try await store.put(table, item: ["id": .s("1"), "token": .s("secret")], condition: nil)
        func mode(_ path: String) -> mode_t {
            var info = stat()
            return lstat(path, &info) == 0 ? info.st_mode & 0o777 : 0
        }
        #expect(mode(directory) == 0o700)
        #expect(mode("\(directory)/private-table.jsonl") == 0o600)
        #expect(mode("\(directory)/private-table.lock") == 0o600)

        // A symlinked lock and a symlinked table are refused; their targets are untouched.
        let other = Stores.temporaryDirectory()
        let linked = TableSchema(name: "linked-table", partitionKey: "id")
        let linkedStore = try FileStore(directory: other, tables: [linked])
        let target = "\(parent)/target.txt"
        try "do not touch\n".write(toFile: target, atomically: true, encoding: .utf8)
        #expect(symlink(target, "\(other)/linked-table.lock") == 0)
        await #expect(throws: KeyValueError.self) { try await linkedStore.put(linked, item: ["id": .s("1")], condition: nil) }
        unlink("\(other)/linked-table.lock")
        #expect(symlink(target, "\(other)/linked-table.jsonl") == 0)
        await #expect(throws: KeyValueError.self) { try await linkedStore.get(linked, key: ["id": .s("1")]) }
        await #expect(throws: KeyValueError.self) { try await linkedStore.put(linked, item: ["id": .s("1")], condition: nil) }
        #expect(try String(contentsOfFile: target, encoding: .utf8) == "do not touch\n")

        #expect(throws: KeyValueError.self) { try FileStore(directory: other, tables: [TableSchema(name: "../escape", partitionKey: "id")]) }
    }

    @Test func tableNamesFromTheEnvironmentAreChecked() async throws {
        let harness = try await H.make(.file)
        for name in ["../outside", "a/b", "..", "x"] {
            let result = try await harness.run("receive", H.webhookEvent("{}"), extra: ["DYNAMODB_PROCESSED_MESSAGES_TABLE": name])
            #expect(result.exitCode == 2, "\(name)")
            #expect(result.stderr.contains("DYNAMODB_PROCESSED_MESSAGES_TABLE"))
        }
        await harness.shutdown()
    }

    // MARK: 9. Repeated keys

    @Test func aRepeatedKeyInADocumentThatNamesATenantIsRefused() async throws {
        let harness = try await H.make(.file)
        let send = try await harness.run(
            "send", Array(#"{"businessId":"B0100001","businessId":"B0999999","platform":"instagram","recipientId":"1","message":{"text":"hi"}}"#.utf8))
        #expect(send.exitCode == 1)
        #expect(send.json?["errorType"] as? String == "InvalidInput")

        let record: [String: Any] = [
            "messageId": "r-dup", "attributes": ["MessageGroupId": "g"],
            "body": #"{"tenant":{"businessId":"B0100001","businessId":"B2","locationId":"L"},"message":{}}"#,
        ]
        let process = try await harness.run("process", Array(try JSONSerialization.data(withJSONObject: ["Records": [record]])))
        #expect(QueueDispatchTests.failures(process) == ["r-dup"])

        let webhook = try await harness.run("receive", H.webhookEvent(#"{"object":"instagram","object":"page","entry":[]}"#))
        #expect(webhook.statusCode == 400)

        let gateway = try await ServeTests.start(harness)
        defer { gateway.process.terminate() }
        let response = try await ServeTests.request(
            "POST", "\(gateway.base)/messages", headers: [ServeTests.authorization],
            body: Array(#"{"businessId":"B0100001","platform":"instagram","platform":"whatsapp","recipientId":"1","message":{"text":"hi"}}"#.utf8))
        #expect(response.status == 400)
        let deep = try await ServeTests.request(
            "POST", "\(gateway.base)/messages", headers: [ServeTests.authorization],
            body: Array(Self.deep(512, prefix: #"{"businessId":"B0100001","message":"#, suffix: "}").utf8))
        #expect(deep.status == 400)
        #expect(gateway.process.isRunning)
        #expect(await harness.graph.messages.isEmpty)
        await harness.shutdown()
    }
}

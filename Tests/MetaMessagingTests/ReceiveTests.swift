import Foundation
import KeyValueStore
import MetaMessaging
import MetaWebhooks
import TestSupport
import Testing

/// `receive` as a process, against the Graph stand-in and both store backends.
@Suite struct ReceiveTests {
    typealias H = FunctionHarness

    @Test(arguments: StoreBackend.allCases)
    func instagramTextIsAnsweredThroughThePage(_ backend: StoreBackend) async throws {
        let harness = try await H.make(backend)
        let result = try await harness.run("receive", TestEvents.load("instagram-text.json"))
        #expect(result.exitCode == 0)
        #expect(result.statusCode == 200)
        #expect(result.bodyJSON?["answered"] as? Int == 1, "\(result.stderr)")
        let sent = try #require(await harness.graph.messages.first)
        #expect(sent.path == "/v25.0/\(H.pageId)/messages")
        #expect(sent.token == H.token)
        #expect(sent.body?["recipient"] as? [String: String] == ["id": "1234567890123456"])
        #expect((sent.body?["message"] as? [String: Any])?["text"] as? String == "Echo: Bună ziua! Aveți loc mâine la 10?")
        #expect(sent.body?["messaging_type"] as? String == "RESPONSE")
        #expect(!result.stderr.contains(H.token))
        #expect(!result.stderr.contains(H.appSecret))
        let mid =
            "aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQxNDAwMDAwMDAwMDAxOjM0MDI4MjM2NjkyMDkzODQ2MzQ2MzE2NDg4MTc2NDU3NzQ1NDcyMDozMTk5MTQ4MjA5NTY0NTg0OTM1NTk5MzY5MjAwMjg0NDIyNAZDZD"
        #expect(try await harness.ledgerStatus(mid) == "answered")
        let record = try await harness.store.get(harness.tables.processedMessages, key: ["messageId": .s(mid)])
        #expect((record?["expiresAt"]?.int ?? 0) > Int64(Date().timeIntervalSince1970))
        await harness.shutdown()
    }

    @Test func everySamplePlatformGoesToItsEndpoint() async throws {
        let harness = try await H.make(.file)
        let attachment = try await harness.run("receive", TestEvents.load("instagram-attachment.json"))
        #expect(attachment.bodyJSON?["answered"] as? Int == 1)
        let messenger = try await harness.run("receive", TestEvents.load("messenger-text.json"))
        #expect(messenger.bodyJSON?["answered"] as? Int == 1)
        let whatsapp = try await harness.run("receive", TestEvents.load("whatsapp-text.json"))
        #expect(whatsapp.bodyJSON?["answered"] as? Int == 1)
        let status = try await harness.run("receive", TestEvents.load("whatsapp-status.json"))
        #expect(status.statusCode == 200)
        #expect(status.bodyJSON?["skipped"] as? Int == 1)

        let sent = await harness.graph.messages
        try #require(sent.count == 3)
        let imageReply = (sent[0].body?["message"] as? [String: Any])?["text"] as? String
        #expect(imageReply?.hasPrefix("Echo: [image: https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=1234567890") == true)
        #expect(sent[1].path == "/v25.0/\(H.pageId)/messages")
        #expect(sent[1].body?["messaging_type"] as? String == "RESPONSE")
        #expect(sent[1].body?["recipient"] as? [String: String] == ["id": "6543210987654321"])
        #expect(sent[2].path == "/v25.0/\(H.phoneNumberId)/messages")
        #expect(sent[2].body?["messaging_product"] as? String == "whatsapp")
        #expect(sent[2].body?["to"] as? String == "16505551234")
        #expect(sent[2].body?["type"] as? String == "text")
        #expect((sent[2].body?["text"] as? [String: Any])?["body"] as? String == "Echo: Can I book a table for two?")
        await harness.shutdown()
    }

    @Test func aBase64BodyIsCheckedAfterDecoding() async throws {
        let harness = try await H.make(.file)
        let body = H.messaging(events: [H.textEvent(mid: "m_b64", text: "caf\\u00e9 \\/ ok")])
        let result = try await harness.run("receive", H.webhookEvent(body, base64: true))
        #expect(result.statusCode == 200)
        #expect(result.bodyJSON?["answered"] as? Int == 1)
        #expect(await harness.graph.messages.count == 1)
        await harness.shutdown()
    }

    @Test(arguments: [
        ("missing", Optional<String>.none),
        ("sha1", "sha1=0123456789abcdef0123456789abcdef01234567"),
        ("not hex", "sha256=zz"),
        ("short", "sha256=abcd"),
        ("other secret", WebhookSignature(appSecret: "another-secret").header(for: Array(#"{"object":"instagram","entry":[]}"#.utf8))),
    ])
    func signatureFailuresAre401AndTouchNothing(_ name: String, _ header: String?) async throws {
        let harness = try await H.make(.file)
        let body = H.messaging(events: [H.textEvent(mid: "m_sig", text: "hi")])
        let result = try await harness.run("receive", H.webhookEvent(body, signature: .some(header)))
        #expect(result.exitCode == 0)
        #expect(result.statusCode == 401, "\(name)")
        #expect(await harness.graph.calls.isEmpty)
        #expect(try await harness.ledgerStatus("m_sig") == nil)
        await harness.shutdown()
    }

    @Test func aSignatureOverReserialisedJSONIsRefused() async throws {
        let harness = try await H.make(.file)
        let raw = H.messaging(events: [H.textEvent(mid: "m_escaped", text: "caf\\u00e9 https:\\/\\/example.com")])
        let object = try JSONSerialization.jsonObject(with: Data(raw.utf8))
        let reserialised = try JSONSerialization.data(withJSONObject: object)
        let forged = WebhookSignature(appSecret: H.appSecret).header(for: Array(reserialised))
        let result = try await harness.run("receive", H.webhookEvent(raw, signature: .some(forged)))
        #expect(result.statusCode == 401)
        #expect(await harness.graph.calls.isEmpty)
        await harness.shutdown()
    }

    @Test func eventsThatAreNeverAnswered() async throws {
        let harness = try await H.make(.file)
        let ig = H.instagramId
        let events = [
            #"{"sender":{"id":"\#(ig)"},"recipient":{"id":"123"},"timestamp":1,"message":{"mid":"m_echo","text":"ours","is_echo":true}}"#,
            #"{"sender":{"id":"\#(ig)"},"recipient":{"id":"123"},"timestamp":2,"message":{"mid":"m_self","text":"from the business"}}"#,
            #"{"sender":{"id":"\#(H.pageId)"},"recipient":{"id":"123"},"timestamp":2,"message":{"mid":"m_page","text":"from the page"}}"#,
            #"{"sender":{"id":"123"},"recipient":{"id":"\#(ig)"},"timestamp":3,"reaction":{"mid":"m_x","action":"react","reaction":"love","emoji":"❤"}}"#,
            #"{"sender":{"id":"123"},"recipient":{"id":"\#(ig)"},"timestamp":4,"read":{"mid":"m_x"}}"#,
            #"{"sender":{"id":"123"},"recipient":{"id":"\#(ig)"},"timestamp":5,"delivery":{"mids":["m_x"],"watermark":5}}"#,
            #"{"sender":{"id":"123"},"recipient":{"id":"\#(ig)"},"timestamp":6,"message":{"mid":"m_deleted","is_deleted":true}}"#,
            #"{"sender":{"id":"123"},"recipient":{"id":"\#(ig)"},"timestamp":7,"message":{"mid":"m_unsupported","is_unsupported":true}}"#,
            #"{"sender":{"id":"123"},"recipient":{"id":"\#(ig)"},"timestamp":8,"message":{"mid":"m_sticker","attachments":[{"type":"sticker_pack","payload":{}}]}}"#,
        ]
        let result = try await harness.run("receive", H.webhookEvent(H.messaging(events: events)))
        #expect(result.statusCode == 200)
        #expect(result.bodyJSON?["answered"] as? Int == 0)
        let whatsapp =
            #"{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"messaging_product":"whatsapp","metadata":{"phone_number_id":"\#(H.phoneNumberId)"},"messages":[{"from":"1650","id":"wamid.R","timestamp":"9","type":"reaction","reaction":{"message_id":"wamid.X","emoji":"👍"}},{"from":"1650","id":"wamid.U","timestamp":"10","type":"unsupported","errors":[{"code":131051}]}],"statuses":[{"id":"wamid.S","status":"read","timestamp":"11","recipient_id":"1650"}]}}]}]}"#
        let second = try await harness.run("receive", H.webhookEvent(whatsapp))
        #expect(second.statusCode == 200)
        #expect(second.bodyJSON?["skipped"] as? Int == 3)
        #expect(await harness.graph.messages.isEmpty)
        await harness.shutdown()
    }

    @Test func unknownTenantsAndDashboardTestEventsAreAcknowledged() async throws {
        let harness = try await H.make(.file)
        let unknown = H.messaging(account: "99999", events: [H.textEvent(mid: "m_unknown", text: "hi", recipient: "99999")])
        let result = try await harness.run("receive", H.webhookEvent(unknown))
        #expect(result.statusCode == 200)
        #expect(result.bodyJSON?["unknownTenant"] as? Int == 1)
        // The App Dashboard's "Test" button: entry id "0", sometimes a string timestamp, sometimes `changes`.
        let dashboard =
            #"{"object":"page","entry":[{"id":"0","time":1527459824,"messaging":[{"sender":{"id":"12334"},"recipient":{"id":"23245"},"timestamp":"1527459824","message":{"mid":"test_message_id","text":"test_message"}}]}]}"#
        #expect(try await harness.run("receive", H.webhookEvent(dashboard)).statusCode == 200)
        let dashboardChanges = #"{"object":"instagram","entry":[{"id":"0","time":1604027716,"changes":[{"field":"messages","value":{"event_type":"test"}}]}]}"#
        #expect(try await harness.run("receive", H.webhookEvent(dashboardChanges)).statusCode == 200)
        #expect(await harness.graph.messages.isEmpty)
        await harness.shutdown()
    }

    @Test func inactiveCredentialsAreNotUsed() async throws {
        let harness = try await H.make(.file, seedTenant: false)
        try await harness.seedTenant(active: false)
        let result = try await harness.run("receive", TestEvents.load("instagram-text.json"))
        #expect(result.statusCode == 200)
        #expect(result.bodyJSON?["inactiveTenant"] as? Int == 1)
        #expect(await harness.graph.messages.isEmpty)
        await harness.shutdown()
    }

    @Test(arguments: StoreBackend.allCases)
    func redeliveryIsAnsweredOnceInSequenceAndConcurrently(_ backend: StoreBackend) async throws {
        let harness = try await H.make(backend)
        let event = TestEvents.load("messenger-text.json")
        let first = try await harness.run("receive", event)
        let second = try await harness.run("receive", event)
        #expect(first.bodyJSON?["answered"] as? Int == 1)
        #expect(second.statusCode == 200)
        #expect(second.bodyJSON?["duplicates"] as? Int == 1)
        #expect(await harness.graph.messages.count == 1)

        let concurrent = H.webhookEvent(H.messaging(object: "page", account: H.pageId, events: [H.textEvent(mid: "m_race", text: "race", recipient: H.pageId)]))
        let results = try await withThrowingTaskGroup(of: ProcessResult.self) { group in
            for _ in 0..<6 { group.addTask { try await harness.run("receive", concurrent) } }
            return try await group.reduce(into: [ProcessResult]()) { $0.append($1) }
        }
        // One answers it. The others found it done (200, a duplicate) or still being answered
        // (500, in progress: not done, so Meta must come back; never a 200 for a message nobody
        // has answered yet).
        #expect(results.compactMap { $0.bodyJSON?["answered"] as? Int }.reduce(0, +) == 1)
        for result in results where result.bodyJSON?["answered"] as? Int != 1 {
            if result.statusCode == 200 {
                #expect(result.bodyJSON?["duplicates"] as? Int == 1)
            } else {
                #expect(result.statusCode == 500)
                #expect(result.bodyJSON?["inProgress"] as? Int == 1)
            }
        }
        // Meta's next redelivery finds it done.
        let after = try await harness.run("receive", concurrent)
        #expect(after.statusCode == 200)
        #expect(after.bodyJSON?["duplicates"] as? Int == 1)
        let raceReplies = await harness.graph.messages.filter { ($0.body?["message"] as? [String: Any])?["text"] as? String == "Echo: race" }
        #expect(raceReplies.count == 1)
        await harness.shutdown()
    }

    @Test func httpAgentGetsTheDocumentedRequestAndItsReplyIsSent() async throws {
        let harness = try await H.make(.file)
        let requests = Recorder()
        let agent = try await LoopbackServer { request in
            await requests.add(request)
            let text = request.jsonBody?["text"] as? String ?? ""
            if text == "silence" { return .json(200, #"{"reply":""}"#) }
            return .json(200, #"{"reply":"We are open 9 to 5."}"#)
        }
        let extra = ["AGENT_BACKEND": "http", "AGENT_HTTP_URL": "\(agent.baseURL)/reply"]
        let result = try await harness.run("receive", TestEvents.load("instagram-text.json"), extra: extra)
        #expect(result.bodyJSON?["answered"] as? Int == 1)
        let request = try #require(await requests.all.first)
        #expect(request.method == "POST")
        #expect(request.path == "/reply")
        let body = try #require(request.jsonBody)
        #expect(body["businessId"] as? String == "B0100001")
        #expect(body["locationId"] as? String == "L0100001")
        #expect(body["platform"] as? String == "instagram")
        #expect(body["senderId"] as? String == "1234567890123456")
        #expect(body["text"] as? String == "Bună ziua! Aveți loc mâine la 10?")
        #expect((body["messageId"] as? String)?.hasPrefix("aWdfZAG1") == true)
        #expect(body["conversationId"] as? String == "B0100001:L0100001:instagram:1234567890123456")
        let texts = await harness.graph.messages.compactMap { ($0.body?["message"] as? [String: Any])?["text"] as? String }
        #expect(texts == ["We are open 9 to 5."])

        let silent = try await harness.run("receive", H.webhookEvent(H.messaging(events: [H.textEvent(mid: "m_silence", text: "silence")])), extra: extra)
        #expect(silent.bodyJSON?["noReply"] as? Int == 1)
        #expect(await harness.graph.messages.count == 1)
        await agent.shutdown()
        await harness.shutdown()
    }

    @Test func graphErrorsOnTheReplyAreRecordedAnd190MarksReconnection() async throws {
        let harness = try await H.make(.file)
        await harness.graph.script([GraphStandIn.error(code: 100, message: "(#100) No matching user found")], pathSuffix: "/messages")
        let first = try await harness.run("receive", H.webhookEvent(H.messaging(events: [H.textEvent(mid: "m_graph100", text: "a")])))
        #expect(first.statusCode == 200)
        #expect(first.bodyJSON?["failed"] as? Int == 1)
        #expect(try await harness.ledgerStatus("m_graph100") == "failed")

        await harness.graph.script(
            [GraphStandIn.error(code: 190, subcode: 463, message: "Error validating access token: Session has expired")], pathSuffix: "/messages")
        let second = try await harness.run("receive", H.webhookEvent(H.messaging(events: [H.textEvent(mid: "m_graph190", text: "b")])))
        #expect(second.statusCode == 200)
        let credentials = try await harness.credentialsItem()
        #expect(credentials?["isActive"] == .bool(false))
        #expect(credentials?["inactiveReason"]?.string?.contains("190") == true)
        #expect(!second.stderr.contains(H.token))

        let third = try await harness.run("receive", H.webhookEvent(H.messaging(events: [H.textEvent(mid: "m_after", text: "c")])))
        #expect(third.bodyJSON?["inactiveTenant"] as? Int == 1)
        await harness.shutdown()
    }

    @Test func badInputNeverCrashesAndNeverSends() async throws {
        let harness = try await H.make(.file)
        let cases: [(String, [UInt8], Int?)] = [
            ("truncated JSON", H.webhookEvent(#"{"object":"instagram","entry":[{"id":"1""#), 400),
            ("wrong types", H.webhookEvent(#"{"object":"instagram","entry":"nope"}"#), 400),
            ("object not a string", H.webhookEvent(#"{"object":5,"entry":[]}"#), 400),
            ("unknown object", H.webhookEvent(#"{"object":"user","entry":[]}"#), 400),
            (
                "missing fields",
                H.webhookEvent(
                    #"{"object":"instagram","entry":[{"messaging":[{}]},{"id":"\#(H.instagramId)","messaging":[{"sender":{"id":"1"}},{"sender":{"id":"1"},"message":{}},{"sender":{"id":"1"},"message":{"mid":"m_empty"}}]}]}"#
                ), 200
            ),
            ("not JSON at all", H.webhookEvent("hello"), 400),
            ("invalid UTF-8", H.webhookEvent(bytes: [0x7B, 0x22, 0xFF, 0xFE, 0x22, 0x7D], base64: true), 400),
            ("5 MB body", H.webhookEvent(#"{"object":"instagram","entry":[],"pad":""# + String(repeating: "a", count: 5 * 1024 * 1024) + #""}"#), 413),
        ]
        for (name, event, status) in cases {
            let result = try await harness.run("receive", event)
            #expect(result.exitCode == 0, "\(name): \(result.stderr.suffix(300))")
            #expect(result.statusCode == status, "\(name)")
        }
        var invalidBase64 = try JSONSerialization.jsonObject(with: Data(H.webhookEvent("{}"))) as? [String: Any] ?? [:]
        invalidBase64["isBase64Encoded"] = true
        invalidBase64["body"] = "%%%not base64%%%"
        let result = try await harness.run("receive", Array(JSONSerialization.data(withJSONObject: invalidBase64)))
        #expect(result.exitCode == 1)
        #expect(result.json?["errorType"] as? String == "InvalidEvent")
        #expect(await harness.graph.messages.isEmpty)
        await harness.shutdown()
    }

    @Test func anUnreachableStoreIs500SoMetaRetries() async throws {
        let harness = try await H.make(.file)
        let moto = try await MotoServer.shared.start()
        var extra = moto.environment
        extra["KV_BACKEND"] = "dynamodb"
        extra["DYNAMODB_ENDPOINT"] = "http://127.0.0.1:1"
        let result = try await harness.run("receive", TestEvents.load("instagram-text.json"), extra: extra)
        #expect(result.exitCode == 0)
        #expect(result.statusCode == 500)
        #expect(await harness.graph.messages.isEmpty)
        await harness.shutdown()
    }

    @Test func missingAppSecretIsAConfigurationError() async throws {
        let result = try await Executables.run(
            "receive", environment: ["KV_FILE_DIR": Stores.temporaryDirectory()], stdin: TestEvents.load("instagram-text.json"))
        #expect(result.exitCode == 2)
        #expect(result.stderr.contains("META_APP_SECRET"))
    }
}

import Essentials
import Foundation
import KeyValueStore
import MetaAgents
import MetaMessaging
import MetaWebhooks
import NIOHTTPTransport
import TestSupport
import Testing

/// RECEIVE_DISPATCH=sqs and `process`, against moto's SQS and DynamoDB (signatures checked)
/// and the Graph stand-in.
@Suite struct QueueDispatchTests {
    typealias H = FunctionHarness

    struct Setup {
        let harness: H
        let queue: SQSQueue
        var environment: [String: String]
    }

    static func setUp() async throws -> Setup {
        var harness = try await H.make(.dynamodb)
        let moto = try await MotoServer.shared.start()
        let admin = SQSQueue(transport: NIOHTTPTransport(), queueURL: "", region: moto.region, endpoint: moto.endpoint, credentials: moto.credentials)
        let url = try await admin.createFIFOQueue(name: Stores.unique("process") + ".fifo", visibilityTimeout: 1)
        let queue = SQSQueue(transport: NIOHTTPTransport(), queueURL: url, region: moto.region, endpoint: moto.endpoint, credentials: moto.credentials)
        harness.environment["RECEIVE_DISPATCH"] = "sqs"
        harness.environment["PROCESS_QUEUE_URL"] = url
        harness.environment["SQS_ENDPOINT"] = moto.endpoint
        return Setup(harness: harness, queue: queue, environment: harness.environment)
    }

    /// The SQS event Lambda would hand to `process` for these received messages.
    static func sqsEvent(_ messages: [JSON], queueARN: String = "arn:aws:sqs:eu-west-1:123456789012:process.fifo") -> [UInt8] {
        let records: [[String: Any]] = messages.map { message in
            [
                "messageId": message["MessageId"]?.string ?? UUID().uuidString,
                "receiptHandle": message["ReceiptHandle"]?.string ?? "",
                "body": message["Body"]?.string ?? "",
                "attributes": [
                    "MessageGroupId": message["Attributes"]?["MessageGroupId"]?.string ?? "",
                    "MessageDeduplicationId": message["Attributes"]?["MessageDeduplicationId"]?.string ?? "",
                    "ApproximateReceiveCount": "1", "SentTimestamp": "\(WallClock.epochMilliseconds())",
                ],
                "messageAttributes": [:], "md5OfBody": "", "eventSource": "aws:sqs",
                "eventSourceARN": queueARN, "awsRegion": "eu-west-1",
            ]
        }
        return Array((try? JSONSerialization.data(withJSONObject: ["Records": records])) ?? Data())
    }

    static func failures(_ result: ProcessResult) -> [String] {
        ((result.json?["batchItemFailures"] as? [[String: String]]) ?? []).compactMap { $0["itemIdentifier"] }
    }

    @Test func receiveQueuesAndAnswers200WithoutCallingTheGraphAPI() async throws {
        let setup = try await Self.setUp()
        let result = try await setup.harness.run("receive", TestEvents.load("instagram-text.json"))
        #expect(result.statusCode == 200, "\(result.stderr.suffix(500))")
        #expect(result.bodyJSON?["queued"] as? Int == 1)
        #expect(await setup.harness.graph.calls.isEmpty)
        let messages = try await setup.queue.receive()
        try #require(messages.count == 1)
        #expect(messages[0]["Attributes"]?["MessageGroupId"]?.string == "B0100001:instagram:1234567890123456")
        #expect(messages[0]["Attributes"]?["MessageDeduplicationId"]?.string?.count == 64)
        let body = try JSON.parse(Array((messages[0]["Body"]?.string ?? "").utf8))
        #expect(body["tenant"]?["businessId"]?.string == "B0100001")
        #expect(body["message"]?["senderId"]?.string == "1234567890123456")
        let mid = body["message"]?["messageId"]?.string ?? ""
        #expect(try await setup.harness.ledgerStatus(mid) == "queued")

        // process answers it, and the ledger says so.
        let processed = try await setup.harness.run("process", Self.sqsEvent(messages))
        #expect(processed.exitCode == 0, "\(processed.stdout) \(processed.stderr.suffix(500))")
        #expect(Self.failures(processed).isEmpty)
        #expect(await setup.harness.graph.messages.count == 1)
        #expect(try await setup.harness.ledgerStatus(mid) == "answered")
        await setup.harness.shutdown()
    }

    /// Dead letters put back (issue 36), against moto: a message moved to the dead-letter
    /// queue and redriven is answered once if it never was, skipped if it was, and never
    /// answered once older than the 7 days Meta allows.
    @Test func aRedrivenMessageIsAnsweredOnceSkippedOnceAnsweredAndNeverPastSevenDays() async throws {
        let setup = try await Self.setUp()
        let moto = try await MotoServer.shared.start()
        let admin = SQSQueue(transport: NIOHTTPTransport(), queueURL: "", region: moto.region, endpoint: moto.endpoint, credentials: moto.credentials)
        let deadLetters = SQSQueue(
            transport: NIOHTTPTransport(), queueURL: try await admin.createFIFOQueue(name: Stores.unique("dlq") + ".fifo", visibilityTimeout: 1),
            region: moto.region, endpoint: moto.endpoint, credentials: moto.credentials)
        let received = try await setup.harness.run("receive", TestEvents.load("instagram-text.json"))
        #expect(received.bodyJSON?["queued"] as? Int == 1)

        // Its tries spent: moved to the dead-letter queue (as SQS's redrive policy does).
        let queued = try await setup.queue.receive()
        try #require(queued.count == 1)
        let body = try #require(queued[0]["Body"]?.string)
        let group = try #require(queued[0]["Attributes"]?["MessageGroupId"]?.string)
        try await deadLetters.send(body: body, groupId: group, deduplicationId: "dead-1")
        try await setup.queue.delete(receiptHandles: [queued[0]["ReceiptHandle"]?.string ?? ""])

        // Redriven (what StartMessageMoveTask does): back on the queue, then answered once.
        func redrive(_ deduplicationId: String) async throws -> [JSON] {
            let dead = try await deadLetters.receive()
            for message in dead {
                try await setup.queue.send(body: message["Body"]?.string ?? "", groupId: group, deduplicationId: deduplicationId)
            }
            try await deadLetters.delete(receiptHandles: dead.compactMap { $0["ReceiptHandle"]?.string })
            return try await setup.queue.receive()
        }
        let redriven = try await redrive("redriven-1")
        try #require(redriven.count == 1)
        let answered = try await setup.harness.run("process", Self.sqsEvent(redriven))
        #expect(Self.failures(answered).isEmpty)
        #expect(await setup.harness.graph.messages.count == 1)
        try await setup.queue.delete(receiptHandles: redriven.compactMap { $0["ReceiptHandle"]?.string })

        // Redriven again after it was answered: skipped, no second reply.
        try await deadLetters.send(body: body, groupId: group, deduplicationId: "dead-2")
        let again = try await redrive("redriven-2")
        let skipped = try await setup.harness.run("process", Self.sqsEvent(again))
        #expect(Self.failures(skipped).isEmpty)
        #expect(await setup.harness.graph.messages.count == 1)
        try await setup.queue.delete(receiptHandles: again.compactMap { $0["ReceiptHandle"]?.string })

        // A message accepted eight days ago and never answered: not answered now.
        var old = try #require(try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any])
        var message = try #require(old["message"] as? [String: Any])
        message["messageId"] = "m_accepted_eight_days_ago"
        old["message"] = message
        old["acceptedAt"] = WallClock.epochSeconds() - 8 * 24 * 3600
        let oldBody = String(decoding: try JSONSerialization.data(withJSONObject: old), as: UTF8.self)
        try await deadLetters.send(body: oldBody, groupId: group, deduplicationId: "dead-3")
        let stale = try await redrive("redriven-3")
        let tooOld = try await setup.harness.run("process", Self.sqsEvent(stale))
        #expect(Self.failures(tooOld).isEmpty)
        #expect(await setup.harness.graph.messages.count == 1)
        #expect(await setup.harness.graph.calls.filter { $0.isMessage }.count == 1)
        #expect(try await setup.harness.ledgerStatus("m_accepted_eight_days_ago") == nil)
        await setup.harness.shutdown()
    }

    @Test func processAnswersAConversationInOrderAndReportsExactlyTheFailedRecord() async throws {
        let setup = try await Self.setUp()
        let agent = try await LoopbackServer { request in
            let text = request.jsonBody?["text"] as? String ?? ""
            let reply = String(decoding: (try? JSONSerialization.data(withJSONObject: ["reply": "re: \(text)"])) ?? Data(), as: UTF8.self)
            return text == "broken" ? .json(503, "{}") : .json(200, reply)
        }
        var environment = setup.environment
        environment["AGENT_BACKEND"] = "http"
        environment["AGENT_HTTP_URL"] = agent.baseURL
        let sentAt = WallClock.epochMilliseconds()
        let events =
            ["one", "two", "three"].enumerated().map { index, text in
                H.textEvent(mid: "m_order_\(index)", text: text, sender: "customer-a", timestamp: sentAt + Int64(index))
            } + [H.textEvent(mid: "m_broken", text: "broken", sender: "customer-b", timestamp: sentAt + 1000)]
        let received = try await Executables.run("receive", environment: environment, stdin: H.webhookEvent(H.messaging(events: events)))
        #expect(received.bodyJSON?["queued"] as? Int == 4)
        var messages: [JSON] = []
        for _ in 0..<5 where messages.count < 4 { messages += try await setup.queue.receive() }
        try #require(messages.count == 4)
        let processed = try await Executables.run("process", environment: environment, stdin: Self.sqsEvent(messages))
        #expect(processed.exitCode == 0)
        let brokenRecord = messages.first { ($0["Body"]?.string ?? "").contains("m_broken") }?["MessageId"]?.string
        #expect(Self.failures(processed) == [brokenRecord].compactMap { $0 })
        let texts = await setup.harness.graph.messages.compactMap { ($0.body?["message"] as? [String: Any])?["text"] as? String }
        // customer-a's three records of the batch are one turn: one reply, each message answered.
        #expect(texts == ["re: one\ntwo\nthree"])
        for index in 0..<3 { #expect(try await setup.harness.ledgerStatus("m_order_\(index)") == "answered") }
        // SQS delivers customer-a's records again: each is a duplicate, nothing is sent twice.
        let redelivered = messages.filter { !($0["Body"]?.string ?? "").contains("m_broken") }
        let again = try await Executables.run("process", environment: environment, stdin: Self.sqsEvent(redelivered))
        #expect(Self.failures(again).isEmpty)
        #expect(await setup.harness.graph.messages.count == 1)
        // The failed one was released: its retry answers it once the agent is back.
        #expect(try await setup.harness.ledgerStatus("m_broken") == "answering")
        await agent.shutdown()
        await setup.harness.shutdown()
    }

    @Test func aRedeliveredWebhookQueuesNothingNew() async throws {
        let setup = try await Self.setUp()
        let first = try await setup.harness.run("receive", TestEvents.load("messenger-text.json"))
        let second = try await setup.harness.run("receive", TestEvents.load("messenger-text.json"))
        #expect(first.statusCode == 200)
        #expect(second.statusCode == 200)
        var messages: [JSON] = []
        for _ in 0..<3 { messages += try await setup.queue.receive() }
        // One message on the queue. (The queue's visibility timeout is 1 s: on a slow machine
        // the same message can be received twice across the three calls; it is still one.)
        #expect(Set(messages.compactMap { $0["MessageId"]?.string }).count == 1)
        messages = Array(messages.prefix(1))
        // Once answered, a redelivery is not even queued again.
        _ = try await setup.harness.run("process", Self.sqsEvent(messages))
        let third = try await setup.harness.run("receive", TestEvents.load("messenger-text.json"))
        #expect(third.bodyJSON?["duplicates"] as? Int == 1)
        #expect(await setup.harness.graph.messages.count == 1)
        await setup.harness.shutdown()
    }

    @Test func anUnreachableQueueIs500AndTheMessageCanBeQueuedLater() async throws {
        let setup = try await Self.setUp()
        let down = try await setup.harness.run("receive", TestEvents.load("whatsapp-text.json"), extra: ["SQS_ENDPOINT": "http://127.0.0.1:1"])
        #expect(down.statusCode == 500)
        #expect(await setup.harness.graph.calls.isEmpty)
        let retried = try await setup.harness.run("receive", TestEvents.load("whatsapp-text.json"))
        #expect(retried.statusCode == 200)
        #expect(retried.bodyJSON?["queued"] as? Int == 1)
        await setup.harness.shutdown()
    }

    @Test func aCrashedProcessIsFinishedByTheRetryAndAnsweredOnce() async throws {
        let setup = try await Self.setUp()
        _ = try await setup.harness.run("receive", TestEvents.load("instagram-text.json"))
        let messages = try await setup.queue.receive()
        try #require(messages.count == 1)
        let mid = try JSON.parse(Array((messages[0]["Body"]?.string ?? "").utf8))["message"]?["messageId"]?.string ?? ""
        // A process that claimed the message and died: its lease ran out.
        try await setup.harness.store.update(
            setup.harness.tables.processedMessages, key: ["messageId": .s(mid)],
            set: ["status": .s("answering"), "owner": .s("crashed-invocation"), "leaseUntil": .number(Int64(Date().timeIntervalSince1970) - 1)])
        let retry = try await setup.harness.run("process", Self.sqsEvent(messages))
        #expect(Self.failures(retry).isEmpty)
        #expect(try await setup.harness.ledgerStatus(mid) == "answered")
        // SQS delivers it once more (at-least-once): nothing is sent twice.
        let again = try await setup.harness.run("process", Self.sqsEvent(messages))
        #expect(Self.failures(again).isEmpty)
        #expect(await setup.harness.graph.messages.count == 1)

        // A claim still under its lease is left alone and retried later.
        try await setup.harness.store.put(
            setup.harness.tables.processedMessages,
            item: [
                "messageId": .s(mid), "status": .s("answering"), "owner": .s("live-invocation"),
                "leaseUntil": .number(Int64(Date().timeIntervalSince1970) + 60), "expiresAt": .number(Int64(Date().timeIntervalSince1970) + 3600),
            ])
        let busy = try await setup.harness.run("process", Self.sqsEvent(messages))
        #expect(Self.failures(busy) == [messages[0]["MessageId"]?.string ?? ""])
        #expect(await setup.harness.graph.messages.count == 1)
        await setup.harness.shutdown()
    }

    @Test func expiredTokenIsNotRetriedForever() async throws {
        let setup = try await Self.setUp()
        _ = try await setup.harness.run("receive", TestEvents.load("instagram-text.json"))
        let messages = try await setup.queue.receive()
        await setup.harness.graph.script([GraphStandIn.error(code: 190, message: "Error validating access token")], pathSuffix: "/messages")
        let result = try await setup.harness.run("process", Self.sqsEvent(messages))
        #expect(Self.failures(result).isEmpty)
        #expect(try await setup.harness.credentialsItem()?["isActive"] == .bool(false))
        await setup.harness.shutdown()
    }

    @Test func aMalformedEventIsAFunctionErrorAndABadRecordIsReported() async throws {
        let setup = try await Self.setUp()
        let bad = try await setup.harness.run("process", Array(#"{"not":"sqs"}"#.utf8))
        #expect(bad.exitCode == 1)
        #expect(bad.json?["errorType"] as? String == "InvalidEvent")
        let record = try await setup.harness.run(
            "process", Array(#"{"Records":[{"messageId":"r1","body":"garbage","attributes":{"MessageGroupId":"g"}}]}"#.utf8))
        #expect(Self.failures(record) == ["r1"])
        let sample = try await setup.harness.run("process", TestEvents.load("process-sqs.json"))
        #expect(sample.exitCode == 0)
        await setup.harness.shutdown()
    }
}

/// A deferral is not a failure (issue 33): an account throttled through more receives than the
/// queue's old limit never sends its customers' messages to the dead-letter queue, and a
/// message that really fails still gets there after its tries, moved by `process` itself.
@Suite struct DeferralTests {
    typealias H = FunctionHarness
    typealias W = HandlerRulesTests

    /// Lambda's SQS record for a message received from moto, with its real receive count.
    static func record(_ message: JSON) throws -> JSON {
        let object: [String: Any] = [
            "messageId": message["MessageId"]?.string ?? "", "receiptHandle": message["ReceiptHandle"]?.string ?? "",
            "body": message["Body"]?.string ?? "",
            "attributes": [
                "MessageGroupId": message["Attributes"]?["MessageGroupId"]?.string ?? "",
                "ApproximateReceiveCount": message["Attributes"]?["ApproximateReceiveCount"]?.string ?? "1",
            ],
            "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:eu-west-1:123456789012:process.fifo",
        ]
        return try JSON.parse(Array(try JSONSerialization.data(withJSONObject: object)))
    }

    /// What Lambda's poller does with one batch: receive, invoke, delete what did not fail.
    static func poll(_ queue: SQSQueue, _ process: ProcessHandler) async throws -> (received: Int, report: ProcessHandler.Report?) {
        let messages = try await queue.receive(max: 10)
        guard !messages.isEmpty else { return (0, nil) }
        let report = await process.handle(records: try messages.map(Self.record), context: HandlerRulesTests.context(clock: process.responder.clock))
        let done = messages.filter { !report.failures.contains($0["MessageId"]?.string ?? "") }.compactMap { $0["ReceiptHandle"]?.string }
        if !done.isEmpty { try await queue.delete(receiptHandles: done) }
        return (messages.count, report)
    }

    @Test func aLongThrottleNeverDeadLettersAndARealFailureDoesAfterItsTries() async throws {
        let harness = try await H.make(.dynamodb)
        let moto = try await MotoServer.shared.start()
        func queue(_ url: String) -> SQSQueue {
            SQSQueue(transport: NIOHTTPTransport(), queueURL: url, region: moto.region, endpoint: moto.endpoint, credentials: moto.credentials)
        }
        let admin = queue("")
        // Visibility 0: a record sent back is received again at once (the poll is the test's).
        let main = queue(try await admin.createFIFOQueue(name: Stores.unique("deferrals") + ".fifo", visibilityTimeout: 0))
        let dead = queue(try await admin.createFIFOQueue(name: Stores.unique("dead") + ".fifo", visibilityTimeout: 0))
        let agent = TakeoverTests.ScriptedAgent(AgentReply(text: "hi"))
        let world = try await W.world(agent: agent, senderActions: false, harness: harness, sharedThrottle: true)
        var process = world.process
        process.deadLetters = dead
        process.maxTries = 5

        // Another execution met Meta's throttle for an hour.
        try await harness.store.put(
            harness.tables.processedMessages,
            item: ["messageId": .s("throttle:\(H.pageId)"), "status": .s("throttle"), "until": .number(harness.clock.now + 3600)])
        /// A message `receive` accepted and queued.
        func queued(_ messageId: String, from customer: String) async throws {
            let accepted = AcceptedMessage(
                tenant: H.tenant,
                message: InboundMessage(
                    platform: .instagram, messageId: messageId, accountId: H.instagramId, senderId: customer,
                    timestamp: harness.clock.nowMilliseconds, content: .text("hello")))
            #expect(try await world.ledger.claim(messageId, businessId: H.tenant.businessId, owner: "receive", as: .queued) == .claimed)
            try await main.enqueue([accepted])
        }
        try await queued("m_long_throttle", from: "1234567890123456")
        for round in 1...8 {
            let (received, report) = try await Self.poll(main, process)
            #expect(received == 1, "round \(round)")
            #expect(report?.failures.count == 1, "round \(round)")
        }
        // Eight receives, all deferrals: still in the queue, never in the dead-letter queue,
        // and the agent never ran.
        #expect(try await world.ledger.deferrals(of: "m_long_throttle") == 8)
        #expect(try await dead.receive(max: 10).isEmpty)
        #expect(agent.requests.isEmpty)
        // Meta lets the account go: answered.
        harness.clock.advance(3601)
        let (_, answered) = try await Self.poll(main, process)
        #expect(answered?.answered == 1)
        #expect(try await world.ledger.status(of: "m_long_throttle") == .answered)

        // A message whose agent fails every time (the agent cannot be reached) has five tries.
        var failing = try await W.world(
            agent: HTTPAgent(url: "http://127.0.0.1:1", transport: NIOHTTPTransport()), senderActions: false, harness: harness)
        failing.process.deadLetters = dead
        try await queued("m_really_fails", from: "42")
        var receives = 0
        while receives < 10 {
            let (received, _) = try await Self.poll(main, failing.process)
            guard received > 0 else { break }
            receives += received
        }
        // Five tries, then the sixth receive moves it: in the dead-letter queue, whole.
        #expect(receives == 6)
        let letters = try await dead.receive(max: 10)
        #expect(letters.count == 1)
        let body = try #require(letters.first?["Body"]?.string)
        #expect(body.contains("m_really_fails"))
        await harness.shutdown()
    }
}

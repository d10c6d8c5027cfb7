import Essentials
import Foundation
import KeyValueStore
import MetaMessaging
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

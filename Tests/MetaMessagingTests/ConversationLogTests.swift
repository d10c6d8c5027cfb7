import Foundation
import FunctionRuntime
import Logging
import MetaMessaging
import MetaTelemetry
import MetaWebhooks
import NIOHTTPTransport
import Synchronization
import TestSupport
import Testing

/// The conversation log on Kinesis (moto, signature checking on) and the Embedded Metric
/// Format lines (issue 18).
@Suite struct ConversationLogTests {
    typealias H = FunctionHarness

    static func stream() async throws -> (MotoServer.Connection, KinesisReader, String) {
        let moto = try await MotoServer.shared.start()
        let reader = KinesisReader(moto)
        let name = "conversations-\(UUID().uuidString.prefix(8).lowercased())"
        try await reader.createStream(name)
        return (moto, reader, name)
    }

    static func environment(_ moto: MotoServer.Connection, stream: String) -> [String: String] {
        moto.environment.merging(["CONVERSATION_STREAM": stream, "KINESIS_ENDPOINT": moto.endpoint, "SENDER_ACTIONS": "off"]) { $1 }
    }

    @Test func aConversationIsLoggedInOrderWithItsSchema() async throws {
        let (moto, reader, name) = try await Self.stream()
        let harness = try await H.make(.file)
        let extra = Self.environment(moto, stream: name)
        let customer = "1234567890123456"
        let text = H.messaging(events: [H.textEvent(mid: "m_log_1", text: "o masă pentru doi", sender: customer)])
        let read = H.messaging(events: [#"{"sender":{"id":"\#(customer)"},"recipient":{"id":"\#(H.instagramId)"},"timestamp":\#(H.now),"read":{"mid":"m_x"}}"#])
        let answered = try await harness.run("receive", H.webhookEvent(text), extra: extra)
        #expect(answered.bodyJSON?["answered"] as? Int == 1, "\(answered.stderr)")
        _ = try await harness.run("receive", H.webhookEvent(read), extra: extra)
        _ = try await harness.run("receive", H.webhookEvent(text), extra: extra)
        await harness.graph.script([GraphStandIn.error(code: 100, message: "(#100) No matching user found")], pathSuffix: "/messages")
        _ = try await harness.run("receive", H.webhookEvent(H.messaging(events: [H.textEvent(mid: "m_log_2", text: "alo", sender: customer)])), extra: extra)

        let records = try await reader.records(name)
        #expect(
            records.map { $0["type"] as? String ?? "" } == [
                "message.accepted", "reply.sent", "message.skipped", "message.duplicate", "message.accepted", "reply.failed",
            ])
        let conversation = "B0100001:L0100001:instagram:\(customer)"
        for record in records {
            #expect(record["schema"] as? Int == 1)
            #expect(record["function"] as? String == "receive")
            #expect((record["time"] as? String).map { $0.hasSuffix("Z") && $0.count == 24 } == true)
            #expect(record["text"] == nil)
            // The read the customer's app sent too: its conversation, not one shard for every
            // tenant's reads.
            #expect(record["conversationId"] as? String == conversation, "\(record["type"] ?? "")")
            #expect(record["_partitionKey"] as? String == conversation)
            #expect(record["businessId"] as? String == "B0100001")
            #expect(record["locationId"] as? String == "L0100001")
            #expect(record["platform"] as? String == "instagram")
        }
        let reply = records[1]
        #expect(reply["messageIds"] as? [String] == ["m_log_1"])
        #expect((reply["sentMessageIds"] as? [String])?.first?.hasPrefix("m_SENT") == true)
        #expect(reply["agentLatencyMs"] is Int)
        #expect(reply["graphLatencyMs"] is Int)
        #expect(records[2]["reason"] as? String == "read")
        #expect(records[5]["errorCode"] as? Int == 100)
        #expect((records[5]["reason"] as? String)?.hasPrefix("GraphAPIError") == true)
        for record in records { #expect(!String(describing: record).contains(H.token)) }

        // The text, only when asked.
        _ = try await harness.run(
            "receive", H.webhookEvent(H.messaging(events: [H.textEvent(mid: "m_log_3", text: "cu text", sender: customer)])),
            extra: extra.merging(["CONVERSATION_STREAM_INCLUDE_TEXT": "true"]) { $1 })
        let withText = try await reader.records(name)
        #expect(
            withText.first { ($0["messageIds"] as? [String]) == ["m_log_3"] && $0["type"] as? String == "message.accepted" }?["text"] as? String == "cu text")
        await harness.shutdown()
    }

    @Test func recordsKinesisRefusedAreSentAgain() async throws {
        let bodies = Mutex<[[UInt8]]>([])
        let server = try await LoopbackServer { request in
            let body = request.jsonBody ?? [:]
            let raw = request.body
            bodies.withLock { $0.append(raw) }
            let records = body["Records"] as? [[String: Any]] ?? []
            // The whole batch always has its second record refused (so a call the client had to
            // repeat for a broken connection, on a loaded machine, is refused the same way).
            if records.count > 1 {
                let answers = records.enumerated().map { index, _ in
                    index == 1
                        ? #"{"ErrorCode":"ProvisionedThroughputExceededException","ErrorMessage":"Rate exceeded for shard"}"#
                        : #"{"SequenceNumber":"1","ShardId":"shardId-000000000000"}"#
                }
                return .json(200, #"{"FailedRecordCount":1,"Records":[\#(answers.joined(separator: ","))]}"#)
            }
            return .json(
                200,
                #"{"FailedRecordCount":0,"Records":[\#(records.map { _ in #"{"SequenceNumber":"2","ShardId":"shardId-000000000000"}"# }.joined(separator: ","))]}"#
            )
        }
        let log = KinesisConversationLog(
            transport: NIOHTTPTransport(), stream: "arn:aws:kinesis:eu-west-1:123456789012:stream/conversations", region: "eu-west-1",
            endpoint: server.baseURL, credentials: .init(accessKeyID: "AKIDEXAMPLE", secretAccessKey: "secret"), timeout: .seconds(10),
            budget: .seconds(10))
        let events = (1...3).map { ConversationEvent(.accepted, businessId: "B1", conversationId: "c\($0)", messageIds: ["m\($0)"]) }
        let outcome = await log.put(events, function: "receive", logger: Logger(label: "test"))
        #expect(outcome.sent == 3)
        #expect(outcome.failed == 0)
        let sent = bodies.withLock { $0 }.map { (try? JSONSerialization.jsonObject(with: Data($0))) as? [String: Any] ?? [:] }
        #expect(sent.count >= 2)
        #expect(sent.first?["StreamARN"] as? String == "arn:aws:kinesis:eu-west-1:123456789012:stream/conversations")
        #expect((sent.last?["Records"] as? [[String: Any]])?.map { $0["PartitionKey"] as? String } == ["c2"])
        await server.shutdown()
    }

    @Test func aStreamThatCannotBeReachedChangesNoAnswer() async throws {
        let harness = try await H.make(.file)
        let moto = try await MotoServer.shared.start()
        var extra = Self.environment(moto, stream: "conversations")
        extra["KINESIS_ENDPOINT"] = "http://127.0.0.1:9"
        let result = try await harness.run("receive", H.webhookEvent(H.messaging(events: [H.textEvent(mid: "m_down", text: "hi")])), extra: extra)
        #expect(result.statusCode == 200)
        #expect(result.bodyJSON?["answered"] as? Int == 1)
        #expect(await harness.graph.messages.count == 1)
        #expect(result.stderr.contains("conversation events lost"))
        // And counted, as a metric of its own.
        let lost = Self.emf(result.stderr).first { $0["ConversationEventsLost"] != nil }
        #expect(lost?["ConversationEventsLost"] as? Int == 2)
        #expect(((lost?["_aws"] as? [String: Any])?["CloudWatchMetrics"] as? [[String: Any]])?.first?["Dimensions"] as? [[String]] == [["Function"]])
        await harness.shutdown()
    }

    static func emf(_ stderr: String) -> [[String: Any]] {
        stderr.split(separator: "\n").compactMap { line in
            guard line.contains("\"_aws\"") else { return nil }
            return (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any]
        }
    }

    @Test func metricsAreEmbeddedMetricFormatOnStderr() async throws {
        let harness = try await H.make(.file)
        let result = try await harness.run("receive", TestEvents.load("instagram-text.json"))
        #expect(result.statusCode == 200)
        let documents = Self.emf(result.stderr)
        #expect(documents.count == 1)
        let document = try #require(documents.first)
        let aws = try #require(document["_aws"] as? [String: Any])
        #expect(aws["Timestamp"] is Int)
        let directive = try #require((aws["CloudWatchMetrics"] as? [[String: Any]])?.first)
        #expect(directive["Namespace"] as? String == "MetaMessaging")
        #expect(directive["Dimensions"] as? [[String]] == [["Function", "Platform"], ["Function"]])
        let metrics = try #require(directive["Metrics"] as? [[String: String]])
        for metric in metrics {
            let name = try #require(metric["Name"])
            #expect(["Count", "Milliseconds"].contains(metric["Unit"] ?? ""))
            // Every metric named in the directive has its value at the top level.
            #expect(document[name] is Int || document[name] is [Int], "\(name)")
        }
        #expect(Set(metrics.compactMap { $0["Name"] }).isSuperset(of: ["Accepted", "Answered", "Skipped", "Duplicates", "Failed", "Queued", "Paused"]))
        #expect(document["Function"] as? String == "receive")
        #expect(document["Platform"] as? String == "instagram")
        #expect(document["Answered"] as? Int == 1)
        #expect(document["businessId"] as? String == "B0100001")
        // stdout keeps its one document.
        #expect(result.stdout.split(separator: "\n").count == 1)

        let named = try await harness.run(
            "receive", H.webhookEvent(H.messaging(events: [H.textEvent(mid: "m_ns", text: "hi")])), extra: ["METRICS_NAMESPACE": "Bistro/Bot"])
        #expect(
            ((Self.emf(named.stderr).first?["_aws"] as? [String: Any])?["CloudWatchMetrics"] as? [[String: Any]])?.first?["Namespace"] as? String
                == "Bistro/Bot")
        let off = try await harness.run("receive", H.webhookEvent(H.messaging(events: [H.textEvent(mid: "m_off", text: "hi")])), extra: ["METRICS": "off"])
        #expect(off.statusCode == 200)
        #expect(Self.emf(off.stderr).isEmpty)
        let bad = try await harness.run("receive", H.webhookEvent("{}"), extra: ["METRICS_NAMESPACE": "AWS/Lambda"])
        #expect(bad.exitCode == 2)
        #expect(bad.stderr.contains("METRICS_NAMESPACE"))
        await harness.shutdown()
    }
}

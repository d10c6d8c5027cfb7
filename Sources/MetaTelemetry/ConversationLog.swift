import AWSSigning
import Essentials
import FunctionRuntime
import HTTPTransport
import Logging
import MetaTenancy
import MetaWebhooks
import Synchronization

/// One event of the conversation log (`"schema": 1`), as the stream's consumers read it.
public struct ConversationEvent: Sendable, Equatable {
    public enum Kind: String, Sendable, CaseIterable {
        case accepted = "message.accepted"
        case duplicate = "message.duplicate"
        case skipped = "message.skipped"
        /// Accepted while a person had the conversation: recorded, not answered.
        case paused = "message.paused"
        case replySent = "reply.sent"
        case replyFailed = "reply.failed"
        /// A reply that may have gone out without its outcome recorded (its sender stopped):
        /// `reason` says whether the in-doubt rule sent it again.
        case replyInDoubt = "reply.in_doubt"
        case noReply = "reply.none"
        case deliveryStatus = "delivery.status"
        /// The agent stepped back: a person answered, the agent handed over, or the API paused it.
        case conversationPaused = "conversation.paused"
        case conversationResumed = "conversation.resumed"
        case connectionMade = "connection.made"
        case connectionRemoved = "connection.removed"
        /// A comment claimed for the agent (`comment.accepted`), answered (`comment.replied`,
        /// `reason` `private` or `private+public`), or left (`comment.skipped` with why).
        case commentAccepted = "comment.accepted"
        case commentReplied = "comment.replied"
        case commentSkipped = "comment.skipped"
        /// A connection's token was found expired or revoked (Graph code 190) while answering.
        case connectionInactive = "connection.inactive"
        /// A WhatsApp number's quality dropped (`FLAGGED`, `DOWNGRADE`).
        case whatsappQualityDrop = "whatsapp.quality_drop"
    }

    public var kind: Kind
    /// Epoch milliseconds.
    public var time: Int64
    public var businessId: String?
    public var locationId: String?
    public var platform: Platform?
    public var conversationId: String?
    public var messageIds: [String] = []
    public var sentMessageIds: [String] = []
    /// Why (a skip's kind, a pause's source, a delivery status, a failure's error type).
    public var reason: String?
    public var errorCode: Int?
    public var agentLatencyMs: Int64?
    public var graphLatencyMs: Int64?
    /// The customer's text (only with `CONVERSATION_STREAM_INCLUDE_TEXT=true`).
    public var text: String?

    public init(
        _ kind: Kind, time: Int64 = ConversationEvent.nowMilliseconds(), businessId: String? = nil, locationId: String? = nil,
        platform: Platform? = nil, conversationId: String? = nil, messageIds: [String] = [], reason: String? = nil
    ) {
        self.kind = kind
        self.time = time
        self.businessId = businessId
        self.locationId = locationId
        self.platform = platform
        self.conversationId = conversationId
        self.messageIds = messageIds
        self.reason = reason
    }

    public static func nowMilliseconds() -> Int64 { WallClock.epochMilliseconds() }

    /// The conversation id of a tenant's customer (as the agent sees it).
    public static func conversationId(_ tenant: Tenant, _ platform: Platform, _ customer: String) -> String {
        "\(tenant.businessId):\(tenant.locationId):\(platform.rawValue):\(customer)"
    }

    /// The record's JSON (one object, keys sorted).
    public func json(function: String) -> JSON {
        var object: [String: JSON] = [
            "schema": 1, "type": .string(kind.rawValue), "time": .string(ISO8601.format(epochMilliseconds: time)),
            "function": .string(function),
        ]
        if let businessId { object["businessId"] = .string(businessId) }
        if let locationId { object["locationId"] = .string(locationId) }
        if let platform { object["platform"] = .string(platform.rawValue) }
        if let conversationId { object["conversationId"] = .string(conversationId) }
        if !messageIds.isEmpty { object["messageIds"] = .array(messageIds.map { .string($0) }) }
        if !sentMessageIds.isEmpty { object["sentMessageIds"] = .array(sentMessageIds.map { .string($0) }) }
        if let reason { object["reason"] = .string(reason) }
        if let errorCode { object["errorCode"] = .number(String(errorCode)) }
        if let agentLatencyMs { object["agentLatencyMs"] = .number(String(agentLatencyMs)) }
        if let graphLatencyMs { object["graphLatencyMs"] = .number(String(graphLatencyMs)) }
        if let text { object["text"] = .string(text) }
        return .dictionary(object)
    }

    /// Kinesis's partition key: the conversation (one conversation stays in order), else the business.
    public var partitionKey: String { conversationId ?? businessId ?? kind.rawValue }
}

/// The events of one invocation, gathered as the handlers go and sent after the answer.
public final class ConversationEvents: Sendable {
    private let events = Mutex<[ConversationEvent]>([])
    /// Whether the customer's text goes into the events.
    public let includeText: Bool

    public init(includeText: Bool = false) {
        self.includeText = includeText
    }

    public func add(_ event: ConversationEvent) { events.withLock { $0.append(event) } }

    public var all: [ConversationEvent] { events.withLock { $0 } }

    public func drain() -> [ConversationEvent] {
        events.withLock { list in
            defer { list = [] }
            return list
        }
    }
}

/// Where conversation events go (`CONVERSATION_STREAM`).
public protocol ConversationLog: Sendable {
    /// Sends the events; a failure is logged and counted, never thrown: the log never changes
    /// what Meta or a caller is answered.
    func put(_ events: [ConversationEvent], function: String, logger: Logger) async -> ConversationLogOutcome
}

public struct ConversationLogOutcome: Sendable, Equatable {
    public var sent = 0
    public var failed = 0
}

/// Amazon Kinesis Data Streams: `PutRecords` over the JSON 1.1 protocol
/// (`X-Amz-Target: Kinesis_20131202.PutRecords`), SigV4-signed for `kinesis`; up to 500
/// records (5 MB) per call, partition key = the conversation; records Kinesis refused
/// (`FailedRecordCount`, a record with `ErrorCode`) are sent again with backoff within
/// `budget`, then counted as failed.
public struct KinesisConversationLog: ConversationLog {
    public let stream: String
    private let client: AWSJSONClient
    private let budget: Duration
    private let clock: WallClock
    /// Records Kinesis refused are sent again on this policy, within `budget`.
    private let resend = Backoff(maxAttempts: 5, base: .milliseconds(50), cap: .milliseconds(800))

    public init(
        transport: any HTTPTransport, stream: String, region: String, endpoint: String? = nil, credentials: AWSCredentials,
        timeout: Duration = .seconds(2), budget: Duration = .seconds(2), clock: WallClock = .system
    ) {
        self.stream = stream
        self.budget = budget
        self.clock = clock
        client = AWSJSONClient(
            transport: transport, signer: SigV4Signer(credentials: credentials, region: region, service: "kinesis"),
            endpoint: endpoint ?? "https://kinesis.\(region).amazonaws.com", targetPrefix: "Kinesis_20131202", timeout: timeout,
            backoff: Backoff(maxAttempts: 2, base: .milliseconds(50), cap: .milliseconds(400)), contentType: "application/x-amz-json-1.1", clock: clock)
    }

    struct Failure: Error { let message: String }
    /// Records of a call that Kinesis refused, to be sent again.
    struct Refused: Error { let records: [(data: [UInt8], key: String)] }

    public func put(_ events: [ConversationEvent], function: String, logger: Logger) async -> ConversationLogOutcome {
        var outcome = ConversationLogOutcome()
        guard !events.isEmpty else { return outcome }
        // Its own budget, never past the time the invocation has left (the work after the
        // answer has a deadline of its own: `Deadline`).
        let deadline = Deadline.earlier(than: clock.instant() + budget)
        var pending = events.map { (data: $0.json(function: function).encoded(), key: String($0.partitionKey.prefix(256))) }
        while !pending.isEmpty {
            // A call carries at most 500 records and 5 MB.
            var batch: [(data: [UInt8], key: String)] = []
            var bytes = 0
            while let next = pending.first, batch.count < 500, bytes + next.data.count + next.key.utf8.count <= 5_000_000 {
                batch.append(next)
                bytes += next.data.count + next.key.utf8.count
                pending.removeFirst()
            }
            if batch.isEmpty, let oversized = pending.first {
                // A single record over Kinesis's 1 MB: never sendable.
                logger.warning("a conversation event over Kinesis's record size was dropped", metadata: ["bytes": "\(oversized.data.count)"])
                outcome.failed += 1
                pending.removeFirst()
                continue
            }
            // What Kinesis refused of the batch goes again; what it took is counted once.
            var unsent = batch
            do {
                try await resend.run(clock: clock, deadline: deadline) { (_: Int) async throws(Refused) in
                    let refused = await putRecords(unsent, logger: logger)
                    outcome.sent += unsent.count - refused.count
                    unsent = refused
                    if !refused.isEmpty { throw Refused(records: refused) }
                } retrying: { _ in
                    true
                }
            } catch {
                logger.warning("Kinesis refused conversation events", metadata: ["records": "\(error.records.count)"])
                outcome.failed += error.records.count
            }
        }
        return outcome
    }

    /// One `PutRecords` call; returns the records Kinesis did not take (all of them when the
    /// call itself failed after the client's own retries).
    private func putRecords(_ batch: [(data: [UInt8], key: String)], logger: Logger) async -> [(data: [UInt8], key: String)] {
        var body: [String: JSON] = [
            "Records": .array(
                batch.map { record in
                    ["Data": .string(Base64.encode(record.data)), "PartitionKey": .string(record.key)]
                })
        ]
        body[stream.hasPrefix("arn:") ? "StreamARN" : "StreamName"] = .string(stream)
        let answer: [UInt8]
        do {
            answer = try await client.call("PutRecords", body: JSON.dictionary(body).encoded()) { failure -> (Failure, Bool) in
                switch failure {
                case .status(let status, let body):
                    let type = (try? JSON.parse(body))?["__type"]?.string ?? "HTTP \(status)"
                    return (Failure(message: "Kinesis \(type)"), status >= 500 || type.contains("ProvisionedThroughputExceeded"))
                case .transport(let error):
                    return (Failure(message: "Kinesis unreachable: \(error.message)"), error.kind == .connection)
                }
            }
        } catch {
            logger.warning("conversation events not delivered", metadata: ["error": "\(error.message)", "records": "\(batch.count)"])
            return batch
        }
        let results = (try? JSON.parse(answer))?["Records"]?.array ?? []
        return batch.enumerated().compactMap { index, record in
            index < results.count && results[index]["ErrorCode"]?.string != nil ? record : nil
        }
    }
}

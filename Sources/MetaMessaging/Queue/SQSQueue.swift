import AWSSigning
import Essentials
import HTTPTransport
import MetaWebhooks

/// Amazon SQS over its JSON protocol (`POST /`, `X-Amz-Target: AmazonSQS.<Action>`,
/// `Content-Type: application/x-amz-json-1.0`), SigV4-signed for service `sqs`.
/// Accepted messages go to a FIFO queue: message group = tenant + customer, so a conversation
/// stays in order while others run in parallel; deduplication id = the message id.
public struct SQSQueue: MessageQueue {
    public let queueURL: String
    private let client: AWSJSONClient

    public var endpoint: String { client.endpoint }

    public init(
        transport: any HTTPTransport, queueURL: String, region: String, endpoint: String? = nil,
        credentials: AWSCredentials, timeout: Duration = .seconds(2), backoff: Backoff = Backoff(maxAttempts: 3),
        clock: WallClock = .system
    ) {
        self.queueURL = queueURL
        client = AWSJSONClient(
            transport: transport, signer: SigV4Signer(credentials: credentials, region: region, service: "sqs"),
            endpoint: endpoint ?? "https://sqs.\(region).amazonaws.com", targetPrefix: "AmazonSQS",
            timeout: timeout, backoff: backoff, clock: clock)
    }

    /// SQS allows 128 characters of `[A-Za-z0-9!"#$%&'()*+,-./:;<=>?@[\]^_`{|}~]` for group and
    /// deduplication ids; longer ids (Instagram mids can be) are replaced by their SHA-256.
    static func sqsId(_ text: String) -> String {
        let allowed = text.utf8.allSatisfy { $0 >= 0x21 && $0 <= 0x7E }
        guard text.utf8.count > 128 || !allowed else { return text }
        return Hex.encode(SHA256.hash(Array(text.utf8)))
    }

    public static func groupId(for accepted: AcceptedMessage) -> String {
        sqsId("\(accepted.tenant.businessId):\(accepted.message.platform.rawValue):\(accepted.message.senderId)")
    }

    public func enqueue(_ messages: [AcceptedMessage]) async throws(QueueError) {
        var start = 0
        while start < messages.count {
            let batch = Array(messages[start..<min(start + 10, messages.count)])
            var entries: [JSON] = []
            for (index, accepted) in batch.enumerated() {
                guard let body = try? JSONNodeEncoder.encode(accepted) else { throw QueueError("a message could not be encoded") }
                entries.append([
                    "Id": .string(String(index)), "MessageBody": .string(String(decoding: body, as: UTF8.self)),
                    "MessageGroupId": .string(Self.groupId(for: accepted)),
                    "MessageDeduplicationId": .string(Self.sqsId(accepted.message.messageId)),
                ])
            }
            let answer = try await call("SendMessageBatch", ["QueueUrl": .string(queueURL), "Entries": .array(entries)])
            if let failed = answer["Failed"]?.array, !failed.isEmpty {
                let codes = failed.compactMap { $0["Code"]?.string }.joined(separator: ", ")
                throw QueueError("SQS refused \(failed.count) of \(batch.count) messages: \(codes)")
            }
            start += 10
        }
    }

    /// Makes each message (by its receipt handle) invisible for `seconds` from now (at most
    /// SQS's 12 hours), so it comes back no sooner: `ChangeMessageVisibilityBatch`, 10 at a time.
    public func changeVisibility(of receiptHandles: [String], seconds: Int) async throws(QueueError) {
        let timeout = min(max(0, seconds), 43_200)
        var start = 0
        while start < receiptHandles.count {
            let batch = receiptHandles[start..<min(start + 10, receiptHandles.count)]
            let entries: [JSON] = batch.enumerated().map { index, handle in
                ["Id": .string(String(index)), "ReceiptHandle": .string(handle), "VisibilityTimeout": .integer(timeout)]
            }
            let answer = try await call("ChangeMessageVisibilityBatch", ["QueueUrl": .string(queueURL), "Entries": .array(entries)])
            if let failed = answer["Failed"]?.array, !failed.isEmpty {
                let codes = failed.compactMap { $0["Code"]?.string }.joined(separator: ", ")
                throw QueueError("SQS did not delay \(failed.count) of \(batch.count) messages: \(codes)")
            }
            start += 10
        }
    }

    /// The URL of the queue an event source ARN names (`arn:aws:sqs:REGION:ACCOUNT:NAME`):
    /// under `endpoint` when given (a local SQS), else SQS's regional endpoint.
    public static func url(ofQueue arn: String, endpoint: String?) -> (url: String, region: String)? {
        let parts = arn.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 6, parts[0] == "arn", parts[2] == "sqs", !parts[3].isEmpty, !parts[4].isEmpty, !parts[5].isEmpty,
            parts[3].allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" }), parts[4].allSatisfy(\.isNumber),
            parts[5].allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == "." })
        else { return nil }
        let base = endpoint.map { $0.hasSuffix("/") ? String($0.dropLast()) : $0 } ?? "https://sqs.\(parts[3]).amazonaws.com"
        return ("\(base)/\(parts[4])/\(parts[5])", String(parts[3]))
    }

    // MARK: Administration and inspection (local set-up, tests)

    /// Creates a FIFO queue (the name must end in `.fifo`) and returns its URL.
    public func createFIFOQueue(name: String, visibilityTimeout: Int = 30) async throws(QueueError) -> String {
        let answer = try await call(
            "CreateQueue",
            [
                "QueueName": .string(name),
                "Attributes": ["FifoQueue": "true", "VisibilityTimeout": .string(String(visibilityTimeout))],
            ])
        guard let url = answer["QueueUrl"]?.string else { throw QueueError("CreateQueue returned no QueueUrl") }
        return url
    }

    /// Sends one message as it is (a record moved to the dead-letter queue): its body, its
    /// conversation's group, and a deduplication id (the record's own id).
    public func send(body: String, groupId: String, deduplicationId: String) async throws(QueueError) {
        _ = try await call(
            "SendMessage",
            [
                "QueueUrl": .string(queueURL), "MessageBody": .string(body), "MessageGroupId": .string(Self.sqsId(groupId)),
                "MessageDeduplicationId": .string(Self.sqsId(deduplicationId)),
            ])
    }

    /// Deletes received messages (what Lambda's poller does after a batch), 10 at a time.
    public func delete(receiptHandles: [String]) async throws(QueueError) {
        var start = 0
        while start < receiptHandles.count {
            let batch = receiptHandles[start..<min(start + 10, receiptHandles.count)]
            let entries: [JSON] = batch.enumerated().map { ["Id": .string(String($0.offset)), "ReceiptHandle": .string($0.element)] }
            _ = try await call("DeleteMessageBatch", ["QueueUrl": .string(queueURL), "Entries": .array(entries)])
            start += 10
        }
    }

    /// Up to 10 messages as SQS hands them to Lambda: `(messageId, body, attributes)`.
    public func receive(max: Int = 10, waitSeconds: Int = 0) async throws(QueueError) -> [JSON] {
        let answer = try await call(
            "ReceiveMessage",
            [
                "QueueUrl": .string(queueURL), "MaxNumberOfMessages": .integer(max),
                "WaitTimeSeconds": .integer(waitSeconds), "MessageSystemAttributeNames": ["All"],
            ])
        return answer["Messages"]?.array ?? []
    }

    private func call(_ action: String, _ input: JSON) async throws(QueueError) -> JSON {
        let answer = try await client.call(action, body: input.encoded()) { failure in
            switch failure {
            case .status(let status, let body):
                let document = try? JSON.parse(body)
                let type = document?["__type"]?.string.map { $0.split(separator: "#").last.map(String.init) ?? $0 } ?? "HTTP \(status)"
                let transient = status >= 500 || type.contains("Throttl")
                return (QueueError("\(action): \(type)\(document?["message"]?.string.map { ": \($0)" } ?? "")"), transient)
            case .transport(let error):
                return (QueueError("\(action): \(error.message)"), true)
            }
        }
        guard let document = try? JSON.parse(answer) else { throw QueueError("\(action): the answer is not SQS JSON") }
        return document
    }
}

import AWSSigning
import Foundation
import HTTPTransport
import NIOHTTPTransport
import SafeJSON

/// Kinesis Data Streams against moto (signature checking on), for the tests: create a stream,
/// read back every record of its shards in order.
public struct KinesisReader: Sendable {
    let client: AWSJSONClient

    public init(_ moto: MotoServer.Connection) {
        client = AWSJSONClient(
            transport: NIOHTTPTransport(), signer: SigV4Signer(credentials: moto.credentials, region: moto.region, service: "kinesis"),
            endpoint: moto.endpoint, targetPrefix: "Kinesis_20131202", timeout: .seconds(10), backoff: Backoff(maxAttempts: 1),
            contentType: "application/x-amz-json-1.1")
    }

    struct Failure: Error { let message: String }

    func call(_ operation: String, _ body: [String: Any]) async throws -> [String: Any] {
        let bytes = Array(try JSONSerialization.data(withJSONObject: body))
        let answer = try await client.call(operation, body: bytes) { failure -> (Failure, Bool) in
            switch failure {
            case .status(let status, let body): (Failure(message: "HTTP \(status): \(String(decoding: body, as: UTF8.self))"), false)
            case .transport(let error): (Failure(message: error.message), false)
            }
        }
        return (try? JSONSerialization.jsonObject(with: Data(answer))) as? [String: Any] ?? [:]
    }

    /// A one-shard stream, active.
    public func createStream(_ name: String) async throws {
        _ = try await call("CreateStream", ["StreamName": name, "ShardCount": 1])
        for _ in 0..<50 {
            let description = try await call("DescribeStreamSummary", ["StreamName": name])
            if ((description["StreamDescriptionSummary"] as? [String: Any])?["StreamStatus"] as? String) == "ACTIVE" { return }
            try await Task.sleep(for: .milliseconds(100))
        }
    }

    /// Every record's data, parsed, in the order of the (single) shard.
    public func records(_ name: String) async throws -> [[String: Any]] {
        let shards = try await call("ListShards", ["StreamName": name])["Shards"] as? [[String: Any]] ?? []
        var records: [[String: Any]] = []
        for shard in shards {
            guard let id = shard["ShardId"] as? String else { continue }
            var iterator =
                try await call(
                    "GetShardIterator", ["StreamName": name, "ShardId": id, "ShardIteratorType": "TRIM_HORIZON"])["ShardIterator"] as? String
            for _ in 0..<20 {
                guard let current = iterator else { break }
                let page = try await call("GetRecords", ["ShardIterator": current, "Limit": 1000])
                let batch = page["Records"] as? [[String: Any]] ?? []
                for record in batch {
                    guard let data = (record["Data"] as? String).flatMap({ Data(base64Encoded: $0) }),
                        let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any]
                    else { continue }
                    var copy = object
                    copy["_partitionKey"] = record["PartitionKey"]
                    records.append(copy)
                }
                if batch.isEmpty { break }
                iterator = page["NextShardIterator"] as? String
            }
        }
        return records
    }
}

import AWSSigning
import Essentials
import HTTPTransport
import SafeJSON

/// DynamoDB over HTTP: the JSON 1.0 protocol (`POST /`, `X-Amz-Target:
/// DynamoDB_20120810.<Operation>`, `Content-Type: application/x-amz-json-1.0`), signed with
/// SigV4 (service `dynamodb`), against AWS or any compatible server (`DYNAMODB_ENDPOINT`).
///
/// Throttling, 5xx answers and lost connections are retried (bounded, exponential backoff
/// with full jitter); every request has a timeout. A retried conditional write whose first
/// attempt did land reports `conditionFailed`: callers that need to tell "mine" from
/// "someone else's" write a claim token and read it back (the exactly-once ledger does).
public struct DynamoDBStore: KeyValueStore {
    private let client: AWSJSONClient

    public var endpoint: String { client.endpoint }

    public init(
        transport: any HTTPTransport, region: String, endpoint: String? = nil, credentials: AWSCredentials,
        backoff: Backoff = Backoff(maxAttempts: 4), timeout: Duration = .seconds(3), clock: WallClock = .system
    ) {
        client = AWSJSONClient(
            transport: transport, signer: SigV4Signer(credentials: credentials, region: region, service: "dynamodb"),
            endpoint: endpoint ?? "https://dynamodb.\(region).amazonaws.com", targetPrefix: "DynamoDB_20120810",
            timeout: timeout, backoff: backoff, clock: clock)
    }

    // MARK: KeyValueStore

    /// Nothing to do: an item DynamoDB deleted or overwrote is not read back by anyone; what
    /// the account's point-in-time recovery keeps, and for how long, is the template's
    /// `BackupRetentionDays`.
    public func forgetHistory(_ table: TableSchema) async throws(KeyValueError) {}

    public func get(_ table: TableSchema, key: Item) async throws(KeyValueError) -> Item? {
        let output: GetItemOutput = try await call("GetItem", GetItemInput(TableName: table.name, Key: key, ConsistentRead: true))
        return output.Item
    }

    public func put(_ table: TableSchema, item: Item, condition: Condition?) async throws(KeyValueError) {
        var expression = Expression()
        let conditionText = condition.map { expression.render($0, table: table) }
        let _: Empty = try await call(
            "PutItem",
            PutItemInput(
                TableName: table.name, Item: item, ConditionExpression: conditionText,
                ExpressionAttributeNames: expression.namesOrNil, ExpressionAttributeValues: expression.valuesOrNil))
    }

    public func update(_ table: TableSchema, key: Item, set: Item, remove: [String], condition: Condition?) async throws(KeyValueError) -> Item {
        var expression = Expression()
        var clauses: [String] = []
        let assignments = set.filter { key[$0.key] == nil }.sorted { $0.key < $1.key }
            .map { "\(expression.name($0.key)) = \(expression.value($0.value))" }
        if !assignments.isEmpty { clauses.append("SET " + assignments.joined(separator: ", ")) }
        let removals = remove.filter { key[$0] == nil }.map { expression.name($0) }
        if !removals.isEmpty { clauses.append("REMOVE " + removals.joined(separator: ", ")) }
        let conditionText = condition.map { expression.render($0, table: table) }
        let output: UpdateItemOutput = try await call(
            "UpdateItem",
            UpdateItemInput(
                TableName: table.name, Key: key, UpdateExpression: clauses.isEmpty ? nil : clauses.joined(separator: " "),
                ConditionExpression: conditionText, ExpressionAttributeNames: expression.namesOrNil,
                ExpressionAttributeValues: expression.valuesOrNil, ReturnValues: "ALL_NEW"))
        return output.Attributes ?? key
    }

    public func increment(_ table: TableSchema, key: Item, attribute: String, by amount: Int64, set: Item) async throws(KeyValueError) -> Item {
        guard key[attribute] == nil else { throw KeyValueError(.invalidRequest, "a key attribute of \(table.name) cannot be a counter") }
        var expression = Expression()
        var clauses: [String] = []
        let assignments = set.filter { key[$0.key] == nil && $0.key != attribute }.sorted { $0.key < $1.key }
            .map { "\(expression.name($0.key)) = \(expression.value($0.value))" }
        if !assignments.isEmpty { clauses.append("SET " + assignments.joined(separator: ", ")) }
        clauses.append("ADD \(expression.name(attribute)) \(expression.value(.n(String(amount))))")
        let output: UpdateItemOutput = try await call(
            "UpdateItem",
            UpdateItemInput(
                TableName: table.name, Key: key, UpdateExpression: clauses.joined(separator: " "), ConditionExpression: nil,
                ExpressionAttributeNames: expression.namesOrNil, ExpressionAttributeValues: expression.valuesOrNil, ReturnValues: "ALL_NEW"))
        return output.Attributes ?? key
    }

    public func delete(_ table: TableSchema, key: Item) async throws(KeyValueError) {
        let _: Empty = try await call("DeleteItem", DeleteItemInput(TableName: table.name, Key: key))
    }

    public func query(_ table: TableSchema, partitionKey value: AttributeValue) async throws(KeyValueError) -> [Item] {
        try await queryPages { start in
            QueryInput(
                TableName: table.name, KeyConditionExpression: "#pk = :pk", ExpressionAttributeNames: ["#pk": table.partitionKey],
                ExpressionAttributeValues: [":pk": value], ExclusiveStartKey: start, ConsistentRead: true)
        }
    }

    /// Every page of a query, from the start.
    private func queryPages(_ input: (Item?) -> QueryInput) async throws(KeyValueError) -> [Item] {
        var items: [Item] = []
        var start: Item?
        repeat {
            let output: QueryOutput = try await call("Query", input(start))
            items += output.Items ?? []
            start = output.LastEvaluatedKey
        } while start != nil
        return items
    }

    public func query(
        _ table: TableSchema, index: String, partitionKey value: AttributeValue, sortKeyAtMost: Int64?
    ) async throws(KeyValueError) -> [Item] {
        guard let schema = table.indexes.first(where: { $0.name == index }) else {
            throw KeyValueError(.invalidRequest, "\(table.name) has no index named \(index)")
        }
        var names = ["#pk": schema.partitionKey]
        var values: Item = [":pk": value]
        var condition = "#pk = :pk"
        if let sortKeyAtMost {
            names["#sk"] = schema.sortKey
            values[":sk"] = .number(sortKeyAtMost)
            condition += " AND #sk <= :sk"
        }
        // A global secondary index is read eventually consistent (the only way it can be).
        return try await queryPages { start in
            QueryInput(
                TableName: table.name, IndexName: index, KeyConditionExpression: condition, ExpressionAttributeNames: names,
                ExpressionAttributeValues: values, ExclusiveStartKey: start, ConsistentRead: false)
        }
    }

    public func scan(_ table: TableSchema, after: Item?, limit: Int) async throws(KeyValueError) -> ScanPage {
        let output: QueryOutput = try await call(
            "Scan", ScanInput(TableName: table.name, Limit: max(1, min(limit, 1000)), ExclusiveStartKey: after, ConsistentRead: true))
        return ScanPage(items: output.Items ?? [], next: output.LastEvaluatedKey)
    }

    // MARK: Table administration (local set-up and tests)

    /// Creates a table with on-demand billing, and its TTL when the schema has one.
    public func createTable(_ table: TableSchema) async throws(KeyValueError) {
        var attributes = [AttributeDefinition(AttributeName: table.partitionKey, AttributeType: "S")]
        var keys = [KeySchemaElement(AttributeName: table.partitionKey, KeyType: "HASH")]
        if let sort = table.sortKey {
            attributes.append(AttributeDefinition(AttributeName: sort, AttributeType: "S"))
            keys.append(KeySchemaElement(AttributeName: sort, KeyType: "RANGE"))
        }
        var indexes: [GlobalSecondaryIndex] = []
        for index in table.indexes {
            if !attributes.contains(where: { $0.AttributeName == index.partitionKey }) {
                attributes.append(AttributeDefinition(AttributeName: index.partitionKey, AttributeType: "S"))
            }
            if !attributes.contains(where: { $0.AttributeName == index.sortKey }) {
                attributes.append(AttributeDefinition(AttributeName: index.sortKey, AttributeType: "N"))
            }
            indexes.append(
                GlobalSecondaryIndex(
                    IndexName: index.name,
                    KeySchema: [
                        KeySchemaElement(AttributeName: index.partitionKey, KeyType: "HASH"), KeySchemaElement(AttributeName: index.sortKey, KeyType: "RANGE"),
                    ], Projection: .init(ProjectionType: "ALL")))
        }
        do {
            let _: Empty = try await call(
                "CreateTable",
                CreateTableInput(
                    TableName: table.name, AttributeDefinitions: attributes, KeySchema: keys, BillingMode: "PAY_PER_REQUEST",
                    GlobalSecondaryIndexes: indexes.isEmpty ? nil : indexes))
        } catch  where error.code == .invalidRequest && error.message.contains("ResourceInUseException") {
            // Our own earlier attempt may have created it before a retried request (its answer
            // was lost or late): the table asked for is there.
        }
        if let ttl = table.ttlAttribute {
            let _: Empty = try await call(
                "UpdateTimeToLive",
                UpdateTimeToLiveInput(
                    TableName: table.name, TimeToLiveSpecification: .init(AttributeName: ttl, Enabled: true)))
        }
    }

    // MARK: The protocol

    private func call<Input: Encodable, Output: Decodable>(_ operation: String, _ input: Input) async throws(KeyValueError) -> Output {
        guard let body = try? JSONNodeEncoder.encode(input) else {
            throw KeyValueError(.invalidRequest, "\(operation): the request cannot be encoded")
        }
        let host = client.host
        let answer = try await client.call(operation, body: body) { failure in
            let error: KeyValueError
            switch failure {
            case .status(let status, let body):
                error = Self.error(operation: operation, status: status, body: body, host: host)
            case .transport(let transport):
                error = KeyValueError(transport.kind == .timeout ? .timeout : .unavailable, "\(operation): \(transport.message)")
            }
            return (error, error.isTransient)
        }
        if Output.self == Empty.self, let empty = Empty() as? Output { return empty }
        guard let output = try? SafeJSON.decode(Output.self, from: answer) else {
            throw KeyValueError(.invalidResponse, "\(operation): the answer from \(host) is not a DynamoDB response")
        }
        return output
    }

    /// DynamoDB's error body: `{"__type": "com.amazonaws.dynamodb.v20120810#Name", "message": "..."}`.
    static func error(operation: String, status: Int, body: [UInt8], host: String) -> KeyValueError {
        struct ErrorBody: Decodable {
            let __type: String?
            let message: String?
            let Message: String?
        }
        guard let decoded = try? SafeJSON.decode(ErrorBody.self, from: body), let type = decoded.__type else {
            if status >= 500 { return KeyValueError(.unavailable, "\(operation): \(host) answered \(status)") }
            if status == 401 || status == 403 { return KeyValueError(.accessDenied, "\(operation): \(host) refused the credentials (\(status))") }
            return KeyValueError(.invalidResponse, "\(operation): \(host) answered \(status) without a DynamoDB error")
        }
        let name = type.split(separator: "#").last.map(String.init) ?? type
        let detail = "\(operation): \(name)" + ((decoded.message ?? decoded.Message).map { ": \($0)" } ?? "")
        switch name {
        case "ConditionalCheckFailedException", "TransactionConflictException":
            return KeyValueError(.conditionFailed, detail)
        case "ResourceNotFoundException":
            return KeyValueError(.tableNotFound, detail)
        case "ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded",
            "InternalServerError", "ServiceUnavailable", "LimitExceededException":
            return KeyValueError(.unavailable, detail)
        case "UnrecognizedClientException", "InvalidSignatureException", "AccessDeniedException",
            "MissingAuthenticationTokenException", "ExpiredTokenException", "IncompleteSignatureException":
            return KeyValueError(.accessDenied, detail)
        default:
            return status >= 500 ? KeyValueError(.unavailable, detail) : KeyValueError(.invalidRequest, detail)
        }
    }
}

/// Placeholders for a condition or update expression: `#n0` for names, `:v0` for values.
struct Expression {
    private(set) var names: [String: String] = [:]
    private(set) var values: Item = [:]

    var namesOrNil: [String: String]? { names.isEmpty ? nil : names }
    var valuesOrNil: Item? { values.isEmpty ? nil : values }

    mutating func name(_ attribute: String) -> String {
        if let existing = names.first(where: { $0.value == attribute }) { return existing.key }
        let placeholder = "#n\(names.count)"
        names[placeholder] = attribute
        return placeholder
    }

    mutating func value(_ value: AttributeValue) -> String {
        let placeholder = ":v\(values.count)"
        values[placeholder] = value
        return placeholder
    }

    mutating func render(_ condition: Condition, table: TableSchema) -> String {
        switch condition {
        case .itemAbsent: return "attribute_not_exists(\(name(table.partitionKey)))"
        case .itemPresent: return "attribute_exists(\(name(table.partitionKey)))"
        case .equals(let attribute, let value): return "\(name(attribute)) = \(self.value(value))"
        case .lessThan(let attribute, let value): return "\(name(attribute)) < \(self.value(value))"
        case .attributeAbsent(let attribute): return "attribute_not_exists(\(name(attribute)))"
        case .and(let a, let b): return "(\(render(a, table: table)) AND \(render(b, table: table)))"
        case .or(let a, let b): return "(\(render(a, table: table)) OR \(render(b, table: table)))"
        }
    }
}

private struct Empty: Codable {}
private struct GetItemInput: Encodable { let TableName: String; let Key: Item; let ConsistentRead: Bool }
private struct GetItemOutput: Decodable { let Item: Item? }
private struct PutItemInput: Encodable {
    let TableName: String
    let Item: Item
    let ConditionExpression: String?
    let ExpressionAttributeNames: [String: String]?
    let ExpressionAttributeValues: Item?
}
private struct UpdateItemInput: Encodable {
    let TableName: String
    let Key: Item
    let UpdateExpression: String?
    let ConditionExpression: String?
    let ExpressionAttributeNames: [String: String]?
    let ExpressionAttributeValues: Item?
    let ReturnValues: String
}
private struct UpdateItemOutput: Decodable { let Attributes: Item? }
private struct DeleteItemInput: Encodable { let TableName: String; let Key: Item }
private struct QueryInput: Encodable {
    let TableName: String
    var IndexName: String? = nil
    let KeyConditionExpression: String
    let ExpressionAttributeNames: [String: String]
    let ExpressionAttributeValues: Item
    let ExclusiveStartKey: Item?
    let ConsistentRead: Bool
}
private struct QueryOutput: Decodable { let Items: [Item]?; let LastEvaluatedKey: Item? }
private struct ScanInput: Encodable {
    let TableName: String
    let Limit: Int
    let ExclusiveStartKey: Item?
    let ConsistentRead: Bool
}
private struct AttributeDefinition: Encodable { let AttributeName: String; let AttributeType: String }
private struct KeySchemaElement: Encodable { let AttributeName: String; let KeyType: String }
private struct CreateTableInput: Encodable {
    let TableName: String
    let AttributeDefinitions: [AttributeDefinition]
    let KeySchema: [KeySchemaElement]
    let BillingMode: String
    let GlobalSecondaryIndexes: [GlobalSecondaryIndex]?
}
private struct GlobalSecondaryIndex: Encodable {
    struct Projection: Encodable { let ProjectionType: String }
    let IndexName: String
    let KeySchema: [KeySchemaElement]
    let Projection: Projection
}
private struct UpdateTimeToLiveInput: Encodable {
    struct Specification: Encodable { let AttributeName: String; let Enabled: Bool }
    let TableName: String
    let TimeToLiveSpecification: Specification
}

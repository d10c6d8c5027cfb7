import Essentials

/// DynamoDB's AttributeValue, encoded in DynamoDB's own JSON (`{"S": "x"}`, `{"N": "1"}`, ...).
public indirect enum AttributeValue: Sendable, Hashable, Codable {
    case s(String)
    case n(String)
    case b([UInt8])
    case bool(Bool)
    case null
    case m([String: AttributeValue])
    case l([AttributeValue])
    case ss([String])
    case ns([String])
    case bs([[UInt8]])

    public static func number<N: BinaryInteger>(_ value: N) -> AttributeValue { .n(String(value)) }

    public var string: String? { if case .s(let value) = self { value } else { nil } }
    public var bool: Bool? { if case .bool(let value) = self { value } else { nil } }
    public var map: [String: AttributeValue]? { if case .m(let value) = self { value } else { nil } }
    public var list: [AttributeValue]? { if case .l(let value) = self { value } else { nil } }
    public var int: Int64? { if case .n(let value) = self { Int64(value) } else { nil } }

    private enum Key: String, CodingKey { case S, N, B, BOOL, NULL, M, L, SS, NS, BS }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: Key.self)
        guard container.allKeys.count == 1, let key = container.allKeys.first else {
            throw DecodingError.dataCorrupted(
                .init(
                    codingPath: decoder.codingPath, debugDescription: "an AttributeValue has exactly one type key"))
        }
        switch key {
        case .S: self = .s(try container.decode(String.self, forKey: key))
        case .N: self = .n(try container.decode(String.self, forKey: key))
        case .B: self = .b(try Self.base64(container.decode(String.self, forKey: key), decoder))
        case .BOOL: self = .bool(try container.decode(Bool.self, forKey: key))
        case .NULL: _ = try container.decode(Bool.self, forKey: key); self = .null
        case .M: self = .m(try container.decode([String: AttributeValue].self, forKey: key))
        case .L: self = .l(try container.decode([AttributeValue].self, forKey: key))
        case .SS: self = .ss(try container.decode([String].self, forKey: key))
        case .NS: self = .ns(try container.decode([String].self, forKey: key))
        case .BS: self = .bs(try container.decode([String].self, forKey: key).map { try Self.base64($0, decoder) })
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: Key.self)
        switch self {
        case .s(let value): try container.encode(value, forKey: .S)
        case .n(let value): try container.encode(value, forKey: .N)
        case .b(let value): try container.encode(Base64.encode(value), forKey: .B)
        case .bool(let value): try container.encode(value, forKey: .BOOL)
        case .null: try container.encode(true, forKey: .NULL)
        case .m(let value): try container.encode(value, forKey: .M)
        case .l(let value): try container.encode(value, forKey: .L)
        case .ss(let value): try container.encode(value, forKey: .SS)
        case .ns(let value): try container.encode(value, forKey: .NS)
        case .bs(let value): try container.encode(value.map { Base64.encode($0) }, forKey: .BS)
        }
    }

    private static func base64(_ text: String, _ decoder: any Decoder) throws -> [UInt8] {
        guard let bytes = Base64.decode(text) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "invalid base64"))
        }
        return bytes
    }
}

public typealias Item = [String: AttributeValue]

/// A table and its key schema (the file backend needs it to find items; DynamoDB knows it).
public struct TableSchema: Sendable, Hashable {
    public let name: String
    public let partitionKey: String
    public let sortKey: String?
    /// The attribute holding an expiry in epoch seconds (DynamoDB's TTL); the file backend
    /// treats an expired item as gone at once and drops its lines when it compacts the table.
    public let ttlAttribute: String?
    /// Global secondary indexes (sparse: an item without an index's partition key is not in it).
    public var indexes: [IndexSchema] = []

    /// DynamoDB's rule for a table name: 3 to 255 of `a-z A-Z 0-9 _ - .`; and not `.` or `..`
    /// alone (the file backend uses the name as a file name in its folder).
    public static func isValidName(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        guard (3...255).contains(bytes.count), !bytes.allSatisfy({ $0 == UInt8(ascii: ".") }) else { return false }
        return bytes.allSatisfy { byte in
            (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z")) || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z"))
                || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9"))
                || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "-") || byte == UInt8(ascii: ".")
        }
    }

    public init(name: String, partitionKey: String, sortKey: String? = nil, ttlAttribute: String? = nil) {
        self.name = name
        self.partitionKey = partitionKey
        self.sortKey = sortKey
        self.ttlAttribute = ttlAttribute
    }

    /// The key attributes of `item`, or nil when one is missing.
    public func key(of item: Item) -> Item? {
        guard let partition = item[partitionKey] else { return nil }
        var key: Item = [partitionKey: partition]
        if let sortKey {
            guard let sort = item[sortKey] else { return nil }
            key[sortKey] = sort
        }
        return key
    }
}

/// A global secondary index: its partition key (a string) and its sort key (a number), all
/// attributes projected. Read eventually consistent in DynamoDB.
public struct IndexSchema: Sendable, Hashable {
    public let name: String
    public let partitionKey: String
    public let sortKey: String

    public init(name: String, partitionKey: String, sortKey: String) {
        self.name = name
        self.partitionKey = partitionKey
        self.sortKey = sortKey
    }
}

/// A condition on the item currently stored under the key, checked atomically with the write.
public indirect enum Condition: Sendable, Hashable {
    /// No item has this key (DynamoDB `attribute_not_exists(<partition key>)`).
    case itemAbsent
    /// An item has this key.
    case itemPresent
    case equals(String, AttributeValue)
    /// The item has no attribute of this name (DynamoDB `attribute_not_exists(<name>)`); also
    /// true when there is no item.
    case attributeAbsent(String)
    /// Numbers compare as numbers, strings as strings.
    case lessThan(String, AttributeValue)
    case and(Condition, Condition)
    case or(Condition, Condition)

    /// Whether the condition holds for `item` (nil: no item under the key).
    public func holds(for item: Item?) -> Bool {
        switch self {
        case .itemAbsent: return item == nil
        case .itemPresent: return item != nil
        case .equals(let name, let value): return item?[name] == value
        case .attributeAbsent(let name): return item?[name] == nil
        case .lessThan(let name, let value):
            switch (item?[name], value) {
            case (.n(let a)?, .n(let b)): return (Double(a) ?? .nan) < (Double(b) ?? .nan)
            case (.s(let a)?, .s(let b)): return a < b
            default: return false
            }
        case .and(let a, let b): return a.holds(for: item) && b.holds(for: item)
        case .or(let a, let b): return a.holds(for: item) || b.holds(for: item)
        }
    }
}

/// What went wrong in the store, with a code the caller can act on. Messages name tables
/// and files, never item values.
public struct KeyValueError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: String, Sendable, Equatable {
        /// The write's condition did not hold: nothing was written.
        case conditionFailed
        case tableNotFound
        /// A table file that is not ours or not intact; left as it is.
        case corruptTable
        /// The store could not be reached or kept failing (5xx, throttling) after retries.
        case unavailable
        case timeout
        /// The server answered something that is not DynamoDB's protocol.
        case invalidResponse
        /// Credentials or signature refused.
        case accessDenied
        /// The request was refused as invalid (a bug on our side, or an item too large).
        case invalidRequest
    }

    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code.rawValue): \(message)" }

    /// Whether retrying the whole operation later may succeed (the answer for Meta is 500).
    public var isTransient: Bool { [.unavailable, .timeout].contains(code) }
}

/// The one interface every function reads and writes through.
public protocol KeyValueStore: Sendable {
    func get(_ table: TableSchema, key: Item) async throws(KeyValueError) -> Item?
    /// Writes the whole item, replacing any item with the same key, if `condition` holds.
    func put(_ table: TableSchema, item: Item, condition: Condition?) async throws(KeyValueError)
    /// Sets and removes attributes of the item under `key` (creating it if absent, as
    /// DynamoDB's UpdateItem does) if `condition` holds; returns the item as it now is.
    @discardableResult
    func update(_ table: TableSchema, key: Item, set: Item, remove: [String], condition: Condition?) async throws(KeyValueError) -> Item
    /// Adds `amount` to the number `attribute` of the item under `key` (0 when absent,
    /// creating the item as DynamoDB's `ADD` does) and sets `set`, atomically across every
    /// process; returns the item as it now is. A counter that is not an integer, or a sum
    /// beyond 64 bits, is `invalidRequest` and changes nothing.
    @discardableResult
    func increment(_ table: TableSchema, key: Item, attribute: String, by amount: Int64, set: Item) async throws(KeyValueError) -> Item
    func delete(_ table: TableSchema, key: Item) async throws(KeyValueError)
    /// Every item with this partition key value, in sort key order.
    func query(_ table: TableSchema, partitionKey value: AttributeValue) async throws(KeyValueError) -> [Item]
    /// Every item of the index `index` with this partition key value, in its sort key's order,
    /// up to `sortKeyAtMost` when given.
    func query(_ table: TableSchema, index: String, partitionKey value: AttributeValue, sortKeyAtMost: Int64?) async throws(KeyValueError) -> [Item]
    /// One page of the whole table: up to `limit` items after the item whose key is `after`
    /// (nil: from the start), and the key to go on from (nil: nothing is left). For jobs that
    /// walk a table a page at a time; the order is the store's own.
    func scan(_ table: TableSchema, after: Item?, limit: Int) async throws(KeyValueError) -> ScanPage
    /// Several writes to one table, in order, each with its own condition and outcome (the item
    /// as it now is, or why it was not written): not a transaction, but a write sees the ones
    /// before it. A store that can makes them durable together (the file store: one append,
    /// one sync); DynamoDB makes one request each.
    func write(_ table: TableSchema, _ writes: [TableWrite]) async throws(KeyValueError) -> [Result<Item, KeyValueError>]
    /// Leaves no earlier version of the table's items (deleted, overwritten, expired) in the
    /// store's own storage by the time it returns, for a deletion that must mean gone: the
    /// file store rewrites the table's file with its live items only (synced, renamed over
    /// the log, the folder synced: the compaction's durability); DynamoDB keeps no history of
    /// its own that the product reads, so it does nothing (its backups are the account's:
    /// docs/security.md says for how long).
    func forgetHistory(_ table: TableSchema) async throws(KeyValueError)
}

/// One write of a batch (`KeyValueStore.write`).
public enum TableWrite: Sendable, Equatable {
    /// As `put`: the whole item, if `condition` holds.
    case put(Item, condition: Condition? = nil)
    /// As `update`: sets and removes attributes of the item under `key`, if `condition` holds.
    case update(key: Item, set: Item, remove: [String] = [], condition: Condition? = nil)
}

/// A page of a scan.
public struct ScanPage: Sendable, Equatable {
    public let items: [Item]
    /// The key to pass as `after` for the next page; nil when the scan is done.
    public let next: Item?

    public init(items: [Item], next: Item?) {
        self.items = items
        self.next = next
    }
}

extension KeyValueStore {
    /// One request after another: what a store without batches does.
    public func write(_ table: TableSchema, _ writes: [TableWrite]) async throws(KeyValueError) -> [Result<Item, KeyValueError>] {
        var outcomes: [Result<Item, KeyValueError>] = []
        outcomes.reserveCapacity(writes.count)
        for write in writes {
            do throws(KeyValueError) {
                switch write {
                case .put(let item, let condition):
                    try await put(table, item: item, condition: condition)
                    outcomes.append(.success(item))
                case .update(let key, let set, let remove, let condition):
                    outcomes.append(.success(try await update(table, key: key, set: set, remove: remove, condition: condition)))
                }
            } catch {
                outcomes.append(.failure(error))
            }
        }
        return outcomes
    }

    public func put(_ table: TableSchema, item: Item) async throws(KeyValueError) {
        try await put(table, item: item, condition: nil)
    }

    @discardableResult
    public func update(_ table: TableSchema, key: Item, set: Item, condition: Condition? = nil) async throws(KeyValueError) -> Item {
        try await update(table, key: key, set: set, remove: [], condition: condition)
    }
}

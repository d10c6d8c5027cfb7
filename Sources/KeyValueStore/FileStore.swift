import Dispatch
import Essentials

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The local backend: one append-only log per table in a folder, `<table>.jsonl`, one JSON
/// record per line in DynamoDB's JSON (`{"Item": {"messageId": {"S": "..."}}}` for an item as it
/// now is, `{"Deleted": {"messageId": {"S": "..."}}}` for a key deleted), read back into an
/// index in memory. An operation costs the same at 100 items as at 100,000: a write appends one
/// line, a read only reads what other processes appended since.
///
/// - Several processes may use the folder at once: every operation holds an OS lock (`flock`
///   on `<table>.lock`, shared to read, exclusive to write) while it catches up with the log,
///   decides and appends, so a conditional put is atomic across processes and no update is lost.
/// - A write returns once its line is on disk (`fdatasync`). A process killed mid-write leaves
///   at most a partial last line that was never acknowledged: readers ignore it and the next
///   writer cuts it off. A line that is not a record of this table is reported
///   (`corruptTable`) and the file is never written.
/// - When superseded, deleted and expired lines outnumber the live items, the next write
///   compacts the log: the live items go to a new file (fsynced) renamed over the old one (the
///   folder fsynced), in key order, which is exactly DynamoDB's JSON import format. Files of
///   the earlier format (every line an `Item`) are such a log already.
/// - Tables hold tokens: files are created 0600 and a folder the store creates 0700; a table or
///   lock that is a symbolic link is refused (`O_NOFOLLOW`), and so is a table name that is not
///   a plain DynamoDB table name (no `/`, never `..`).
public struct FileStore: KeyValueStore {
    public let directory: String
    private let logs: [String: TableLog]
    private let now: @Sendable () -> Int64

    public init(directory: String, tables: [TableSchema], now: @escaping @Sendable () -> Int64 = FileStore.epochSeconds) throws(KeyValueError) {
        self.directory = directory
        self.now = now
        for table in tables where !TableSchema.isValidName(table.name) {
            throw KeyValueError(.invalidRequest, "\(table.name.prefix(64)) is not a valid table name")
        }
        try Self.makeDirectory(directory)
        var logs: [String: TableLog] = [:]
        for table in tables { logs[table.name] = TableLog(schema: table, directory: directory) }
        self.logs = logs
    }

    public static func epochSeconds() -> Int64 { WallClock.epochSeconds() }

    public func path(of table: TableSchema) -> String { "\(directory)/\(table.name).jsonl" }

    // MARK: KeyValueStore

    public func get(_ table: TableSchema, key: Item) async throws(KeyValueError) -> Item? {
        try await log(of: table).read(now: now) { items in items.item(for: key) }
    }

    public func put(_ table: TableSchema, item: Item, condition: Condition?) async throws(KeyValueError) {
        let decide = try Self.decision(table, .put(item, condition: condition))
        _ = try await log(of: table).write(now: now) { items throws(KeyValueError) in try decide(items) }
    }

    public func update(_ table: TableSchema, key: Item, set: Item, remove: [String], condition: Condition?) async throws(KeyValueError) -> Item {
        let decide = try Self.decision(table, .update(key: key, set: set, remove: remove, condition: condition))
        return try await log(of: table).write(now: now) { items throws(KeyValueError) in try decide(items) }
    }

    /// The writes, decided in order under one lock (each sees the ones before it), appended
    /// together and synced once.
    public func write(_ table: TableSchema, _ writes: [TableWrite]) async throws(KeyValueError) -> [Result<Item, KeyValueError>] {
        let log = try log(of: table)
        var outcomes: [Result<Item, KeyValueError>?] = []
        var deciders: [Decision] = []
        for write in writes {
            do throws(KeyValueError) {
                deciders.append(try Self.decision(table, write))
                outcomes.append(nil)
            } catch {
                outcomes.append(.failure(error))
            }
        }
        guard !deciders.isEmpty else { return outcomes.compactMap { $0 } }
        var decided = try await log.write(now: now, deciders)[...]
        return outcomes.map { outcome in outcome ?? decided.popFirst() ?? .failure(KeyValueError(.unavailable, "a write went undecided")) }
    }

    typealias Decision = @Sendable (LogItems) throws(KeyValueError) -> (LogChange?, Item)

    /// What a write does to the table as it is when the lock is held: the change and the item
    /// as it then is, or `conditionFailed`. A key that does not fit the table is refused first.
    private static func decision(_ table: TableSchema, _ write: TableWrite) throws(KeyValueError) -> Decision {
        switch write {
        case .put(let item, let condition):
            guard let key = table.key(of: item) else {
                throw KeyValueError(.invalidRequest, "the item lacks the key attributes of \(table.name)")
            }
            return { items throws(KeyValueError) in
                if let condition, !condition.holds(for: items.item(for: key)) {
                    throw KeyValueError(.conditionFailed, "the condition on \(table.name) did not hold")
                }
                return (.put(key: key, item: item), item)
            }
        case .update(let key, let set, let remove, let condition):
            guard table.key(of: key) == key else {
                throw KeyValueError(.invalidRequest, "the key does not match the key schema of \(table.name)")
            }
            return { items throws(KeyValueError) in
                let current = items.item(for: key)
                if let condition, !condition.holds(for: current) {
                    throw KeyValueError(.conditionFailed, "the condition on \(table.name) did not hold")
                }
                var updated = current ?? key
                for (name, value) in set where key[name] == nil { updated[name] = value }
                for name in remove where key[name] == nil { updated[name] = nil }
                return (.put(key: key, item: updated), updated)
            }
        }
    }

    public func increment(_ table: TableSchema, key: Item, attribute: String, by amount: Int64, set: Item) async throws(KeyValueError) -> Item {
        guard table.key(of: key) == key else {
            throw KeyValueError(.invalidRequest, "the key does not match the key schema of \(table.name)")
        }
        guard key[attribute] == nil else { throw KeyValueError(.invalidRequest, "a key attribute of \(table.name) cannot be a counter") }
        return try await log(of: table).write(now: now) { items throws(KeyValueError) in
            var updated = items.item(for: key) ?? key
            let current: Int64
            switch updated[attribute] {
            case nil: current = 0
            case .n(let text)?:
                guard let value = Int64(text) else { throw KeyValueError(.invalidRequest, "the counter \(attribute) is not an integer") }
                current = value
            default: throw KeyValueError(.invalidRequest, "the counter \(attribute) is not a number")
            }
            let (sum, overflow) = current.addingReportingOverflow(amount)
            guard !overflow else { throw KeyValueError(.invalidRequest, "the counter \(attribute) would pass 64 bits") }
            for (name, value) in set where key[name] == nil { updated[name] = value }
            updated[attribute] = .n(String(sum))
            return (.put(key: key, item: updated), updated)
        }
    }

    public func delete(_ table: TableSchema, key: Item) async throws(KeyValueError) {
        guard table.key(of: key) == key else {
            throw KeyValueError(.invalidRequest, "the key does not match the key schema of \(table.name)")
        }
        try await log(of: table).write(now: now) { items in
            // An expired item still has a line: deleting it writes the deletion, so it never
            // comes back if its TTL attribute is later set again.
            (items.hasRecord(for: key) ? .delete(key: key) : nil, ())
        }
    }

    public func query(_ table: TableSchema, partitionKey value: AttributeValue) async throws(KeyValueError) -> [Item] {
        try await log(of: table).read(now: now) { items in items.partition(value) }
    }

    public func query(
        _ table: TableSchema, index: String, partitionKey value: AttributeValue, sortKeyAtMost: Int64?
    ) async throws(KeyValueError) -> [Item] {
        guard let schema = table.indexes.first(where: { $0.name == index }) else {
            throw KeyValueError(.invalidRequest, "\(table.name) has no index named \(index)")
        }
        return try await log(of: table).read(now: now) { items in
            items.live.filter { item in
                guard item[schema.partitionKey] == value, let sort = item[schema.sortKey]?.int else { return false }
                return sortKeyAtMost.map { sort <= $0 } ?? true
            }.sorted { TableSchema.sortsBefore($0[schema.sortKey], $1[schema.sortKey]) }
        }
    }

    /// Items in key order (partition key, then sort key), so a page's last key says where the
    /// next starts. Each page sorts the live items: a job walking a large table a page at a
    /// time pays that per page (the daily token refresh walks the credentials table).
    public func scan(_ table: TableSchema, after: Item?, limit: Int) async throws(KeyValueError) -> ScanPage {
        try await log(of: table).read(now: now) { items in
            var ordered = items.live.sorted(by: table.precedes)
            if let after { ordered = ordered.filter { table.precedes(after, $0) } }
            let page = Array(ordered.prefix(max(1, limit)))
            let next = ordered.count > page.count ? page.last.flatMap { table.key(of: $0) } : nil
            return ScanPage(items: page, next: next)
        }
    }

    /// Rewrites the table's log as its live items only (the next write does it by itself
    /// when dead lines outnumber live items); for tools and tests.
    public func forgetHistory(_ table: TableSchema) async throws(KeyValueError) {
        try await compact(table)
    }

    public func compact(_ table: TableSchema) async throws(KeyValueError) {
        try await log(of: table).compactNow(now: now)
    }

    private func log(of table: TableSchema) throws(KeyValueError) -> TableLog {
        guard let log = logs[table.name], log.schema == table else {
            throw KeyValueError(.tableNotFound, "no table named \(table.name) in \(directory)")
        }
        return log
    }

    private static func makeDirectory(_ path: String) throws(KeyValueError) {
        var current = path.hasPrefix("/") ? "" : "."
        for part in path.split(separator: "/") {
            current += "/" + part
            if mkdir(current, 0o700) != 0, errno != EEXIST {
                throw TableLog.ioError("cannot create the folder \(current)")
            }
        }
    }
}

extension TableSchema {
    /// Key order: partition key, then sort key (strings by their UTF-8 bytes, as DynamoDB
    /// orders them; numbers by value).
    func precedes(_ a: Item, _ b: Item) -> Bool {
        if a[partitionKey] != b[partitionKey] { return Self.sortsBefore(a[partitionKey], b[partitionKey]) }
        guard let sortKey else { return false }
        return Self.sortsBefore(a[sortKey], b[sortKey])
    }

    static func sortsBefore(_ a: AttributeValue?, _ b: AttributeValue?) -> Bool {
        switch (a, b) {
        case (.s(let x)?, .s(let y)?): return x.utf8.lexicographicallyPrecedes(y.utf8)
        case (.n(let x)?, .n(let y)?): return (Double(x) ?? 0) < (Double(y) ?? 0)
        default: return false
        }
    }
}

import Dispatch
import Essentials
import SafeJSON
import Synchronization

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The local backend: one file per table in a folder, `<table>.jsonl`, one item per line in
/// DynamoDB's JSON import format (`{"Item": {"messageId": {"S": "..."}}}`), so a table can be
/// loaded into DynamoDB with ImportTable as it is.
///
/// - Several processes may use the folder at once: every operation holds an OS lock
///   (`flock` on `<table>.lock`, shared to read, exclusive to write) while it reads, decides
///   and writes, so a conditional put is atomic across processes and no update is lost.
/// - A write goes to a temporary file that is fsynced and then renamed over the table, and
///   the folder is fsynced: a crash leaves the old table or the new one, never half of one.
/// - A file that does not parse is reported (`corruptTable`) and never overwritten.
/// - Tables hold tokens: files are created 0600 and a folder the store creates 0700; a table or
///   lock that is a symbolic link is refused (`O_NOFOLLOW`), and so is a table name that is not
///   a plain DynamoDB table name (no `/`, never `..`).
public struct FileStore: KeyValueStore {
    public let directory: String
    private let tables: [String: TableSchema]
    private let now: @Sendable () -> Int64

    public init(directory: String, tables: [TableSchema], now: @escaping @Sendable () -> Int64 = FileStore.epochSeconds) throws(KeyValueError) {
        self.directory = directory
        self.tables = Dictionary(tables.map { ($0.name, $0) }, uniquingKeysWith: { $1 })
        self.now = now
        for table in tables where !TableSchema.isValidName(table.name) {
            throw KeyValueError(.invalidRequest, "\(table.name.prefix(64)) is not a valid table name")
        }
        try Self.makeDirectory(directory)
    }

    public static func epochSeconds() -> Int64 { WallClock.epochSeconds() }

    public func path(of table: TableSchema) -> String { "\(directory)/\(table.name).jsonl" }

    // MARK: KeyValueStore

    public func get(_ table: TableSchema, key: Item) async throws(KeyValueError) -> Item? {
        try await offload { () throws(KeyValueError) in try withTable(table, exclusive: false) { items in items.item(for: key) } }
    }

    /// Runs blocking file work (flock, read, fsync, rename) on a thread of its own, never on
    /// Swift's cooperative pool: a process serving several requests (serve, or a test process
    /// running many suites) keeps answering while a table is written.
    private func offload<T: Sendable>(_ work: @escaping @Sendable () throws(KeyValueError) -> T) async throws(KeyValueError) -> T {
        let result = await withCheckedContinuation { (continuation: CheckedContinuation<Result<T, KeyValueError>, Never>) in
            DispatchQueue.global().async {
                continuation.resume(returning: Result { () throws(KeyValueError) -> T in try work() })
            }
        }
        return try result.get()
    }

    public func put(_ table: TableSchema, item: Item, condition: Condition?) async throws(KeyValueError) {
        try await offload { () throws(KeyValueError) in try putNow(table, item: item, condition: condition) }
    }

    private func putNow(_ table: TableSchema, item: Item, condition: Condition?) throws(KeyValueError) {
        guard let key = table.key(of: item) else {
            throw KeyValueError(.invalidRequest, "the item lacks the key attributes of \(table.name)")
        }
        try withTable(table, exclusive: true) { items throws(KeyValueError) in
            if let condition, !condition.holds(for: items.item(for: key)) {
                throw KeyValueError(.conditionFailed, "the condition on \(table.name) did not hold")
            }
            items.store(item, key: key)
        }
    }

    public func update(_ table: TableSchema, key: Item, set: Item, remove: [String], condition: Condition?) async throws(KeyValueError) -> Item {
        try await offload { () throws(KeyValueError) in try updateNow(table, key: key, set: set, remove: remove, condition: condition) }
    }

    private func updateNow(_ table: TableSchema, key: Item, set: Item, remove: [String], condition: Condition?) throws(KeyValueError) -> Item {
        guard table.key(of: key) == key else {
            throw KeyValueError(.invalidRequest, "the key does not match the key schema of \(table.name)")
        }
        return try withTable(table, exclusive: true) { items throws(KeyValueError) in
            let current = items.item(for: key)
            if let condition, !condition.holds(for: current) {
                throw KeyValueError(.conditionFailed, "the condition on \(table.name) did not hold")
            }
            var updated = current ?? key
            for (name, value) in set where key[name] == nil { updated[name] = value }
            for name in remove where key[name] == nil { updated[name] = nil }
            items.store(updated, key: key)
            return updated
        }
    }

    public func delete(_ table: TableSchema, key: Item) async throws(KeyValueError) {
        try await offload { () throws(KeyValueError) in try withTable(table, exclusive: true) { items in items.remove(key: key) } }
    }

    public func query(_ table: TableSchema, partitionKey value: AttributeValue) async throws(KeyValueError) -> [Item] {
        try await offload { () throws(KeyValueError) in
            try withTable(table, exclusive: false) { items in
                let matching = items.live.filter { $0[table.partitionKey] == value }
                guard let sortKey = table.sortKey else { return matching }
                return matching.sorted { Self.sortsBefore($0[sortKey], $1[sortKey]) }
            }
        }
    }

    /// Items in key order (partition key, then sort key), so a page's last key says where the
    /// next starts.
    public func scan(_ table: TableSchema, after: Item?, limit: Int) async throws(KeyValueError) -> ScanPage {
        try await offload { () throws(KeyValueError) in
            try withTable(table, exclusive: false) { items in
                func precedes(_ a: Item, _ b: Item) -> Bool {
                    if a[table.partitionKey] != b[table.partitionKey] { return Self.sortsBefore(a[table.partitionKey], b[table.partitionKey]) }
                    guard let sortKey = table.sortKey else { return false }
                    return Self.sortsBefore(a[sortKey], b[sortKey])
                }
                var ordered = items.live.sorted(by: precedes)
                if let after { ordered = ordered.filter { precedes(after, $0) } }
                let page = Array(ordered.prefix(max(1, limit)))
                let next = ordered.count > page.count ? page.last.flatMap { table.key(of: $0) } : nil
                return ScanPage(items: page, next: next)
            }
        }
    }

    private static func sortsBefore(_ a: AttributeValue?, _ b: AttributeValue?) -> Bool {
        switch (a, b) {
        case (.s(let x)?, .s(let y)?): return Array(x.utf8).lexicographicallyPrecedes(Array(y.utf8))
        case (.n(let x)?, .n(let y)?): return (Double(x) ?? 0) < (Double(y) ?? 0)
        default: return false
        }
    }

    // MARK: The table file

    private func withTable<T>(
        _ table: TableSchema, exclusive: Bool, _ body: (inout TableItems) throws(KeyValueError) -> T
    ) throws(KeyValueError) -> T {
        guard let schema = tables[table.name] else {
            throw KeyValueError(.tableNotFound, "no table named \(table.name) in \(directory)")
        }
        let lockPath = "\(directory)/\(schema.name).lock"
        let lock = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard lock >= 0 else {
            if errno == ELOOP { throw KeyValueError(.unavailable, "\(lockPath) is a symbolic link: refused") }
            throw Self.ioError("cannot open \(lockPath)")
        }
        defer { close(lock) }
        while flock(lock, exclusive ? LOCK_EX : LOCK_SH) != 0 {
            guard errno == EINTR else { throw Self.ioError("cannot lock \(lockPath)") }
        }
        defer { flock(lock, LOCK_UN) }

        let path = path(of: schema)
        var items = try cachedRead(path: path, schema: schema)
        let before = items.version
        let result = try body(&items)
        if exclusive, items.version != before {
            if let ttl = schema.ttlAttribute {
                let now = self.now()
                items.removeAll { ($0[ttl]?.int).map { $0 < now } ?? false }
            }
            try write(items, to: path)
            Self.remember(items, path: path)
        }
        return result
    }

    /// The parsed table, reused while the file is the one parsed last (same inode, size and
    /// modification time: every write renames a new file into place). Parsing a large table
    /// for every read is what a cache saves; the lock is held, so the file cannot change
    /// under us.
    private func cachedRead(path: String, schema: TableSchema) throws(KeyValueError) -> TableItems {
        var info = stat()
        guard lstat(path, &info) == 0 else { return try read(path: path, schema: schema) }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            throw KeyValueError(.corruptTable, "\(path) is not a regular file (a symbolic link?): refused, and left as it is")
        }
        let signature = FileSignature(info)
        if let cached = Self.cache.withLock({ $0[path] }), cached.signature == signature, cached.items.schema == schema {
            return cached.items.refreshed(now: now())
        }
        let items = try read(path: path, schema: schema)
        Self.cache.withLock { $0[path] = CachedTable(signature: signature, items: items) }
        return items
    }

    private static func remember(_ items: TableItems, path: String) {
        var info = stat()
        guard stat(path, &info) == 0 else { return }
        cache.withLock { $0[path] = CachedTable(signature: FileSignature(info), items: items.unversioned()) }
    }

    private static let cache = Mutex<[String: CachedTable]>([:])

    private func read(path: String, schema: TableSchema) throws(KeyValueError) -> TableItems {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        if fd < 0 {
            if errno == ENOENT { return TableItems(schema: schema, now: now()) }
            if errno == ELOOP { throw KeyValueError(.corruptTable, "\(path) is a symbolic link: refused, and left as it is") }
            throw Self.ioError("cannot open \(path)")
        }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let count = chunk.withUnsafeMutableBytes { System.read(fd, into: $0, at: 0) }
            if count < 0 {
                if errno == EINTR { continue }
                throw Self.ioError("cannot read \(path)")
            }
            if count == 0 { break }
            bytes.append(contentsOf: chunk[0..<count])
        }
        var items = TableItems(schema: schema, now: now())
        for (number, line) in bytes.split(separator: UInt8(ascii: "\n")).enumerated() {
            if line.allSatisfy({ $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\r") }) { continue }
            guard let record = try? SafeJSON.decode(ItemLine.self, from: Array(line)),
                let key = schema.key(of: record.Item)
            else {
                throw KeyValueError(.corruptTable, "\(path) line \(number + 1) is not a DynamoDB JSON item of \(schema.name); the file was left as it is")
            }
            items.load(record.Item, key: key)
        }
        return items
    }

    private func write(_ items: TableItems, to path: String) throws(KeyValueError) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        var bytes: [UInt8] = []
        for item in items.all {
            guard let line = try? encoder.encode(ItemLine(Item: item)) else {
                throw KeyValueError(.invalidRequest, "an item of \(items.schema.name) cannot be encoded")
            }
            bytes.append(contentsOf: line)
            bytes.append(UInt8(ascii: "\n"))
        }
        let temporary = "\(path).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else { throw Self.ioError("cannot create \(temporary)") }
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { System.write(fd, $0, from: offset) }
            if written < 0 {
                if errno == EINTR { continue }
                let error = Self.ioError("cannot write \(temporary)")
                close(fd)
                unlink(temporary)
                throw error
            }
            offset += written
        }
        guard fsync(fd) == 0 else {
            let error = Self.ioError("cannot fsync \(temporary)")
            close(fd)
            unlink(temporary)
            throw error
        }
        close(fd)
        guard rename(temporary, path) == 0 else {
            let error = Self.ioError("cannot rename \(temporary) to \(path)")
            unlink(temporary)
            throw error
        }
        let folder = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if folder >= 0 {
            fsync(folder)
            close(folder)
        }
    }

    private static func makeDirectory(_ path: String) throws(KeyValueError) {
        var current = path.hasPrefix("/") ? "" : "."
        for part in path.split(separator: "/") {
            current += "/" + part
            if mkdir(current, 0o700) != 0, errno != EEXIST {
                throw ioError("cannot create the folder \(current)")
            }
        }
    }

    private static func ioError(_ message: String) -> KeyValueError {
        KeyValueError(.unavailable, "\(message): \(String(cString: strerror(errno)))")
    }
}

private struct FileSignature: Equatable, Sendable {
    let device: UInt64
    let inode: UInt64
    let size: Int64
    let seconds: Int64
    let nanoseconds: Int64

    init(_ info: stat) {
        device = UInt64(info.st_dev)
        inode = UInt64(info.st_ino)
        size = Int64(info.st_size)
        seconds = Int64(info.modificationTime.tv_sec)
        nanoseconds = Int64(info.modificationTime.tv_nsec)
    }
}

private struct CachedTable: Sendable {
    let signature: FileSignature
    let items: TableItems
}

/// `{"Item": {...}}`: one line of DynamoDB's JSON import format.
private struct ItemLine: Codable {
    let Item: Item
}

/// The items of one table in file order, indexed by key.
private struct TableItems: Sendable {
    let schema: TableSchema
    private(set) var all: [Item] = []
    private var index: [Item: Int] = [:]
    private var now: Int64
    /// Bumped by every change, so an operation that changed nothing writes nothing.
    private(set) var version = 0

    init(schema: TableSchema, now: Int64) {
        self.schema = schema
        self.now = now
    }

    /// The same items seen at another time (for TTL checks).
    func refreshed(now: Int64) -> TableItems {
        var copy = self
        copy.now = now
        copy.version = 0
        return copy
    }

    func unversioned() -> TableItems {
        var copy = self
        copy.version = 0
        return copy
    }

    mutating func load(_ item: Item, key: Item) {
        if let position = index[key] {
            all[position] = item
        } else {
            index[key] = all.count
            all.append(item)
        }
    }

    /// The live item under `key` (an item past its TTL counts as gone, as it soon is in DynamoDB).
    func item(for key: Item) -> Item? {
        guard let position = index[key] else { return nil }
        let item = all[position]
        if let ttl = schema.ttlAttribute, let expiry = item[ttl]?.int, expiry < now { return nil }
        return item
    }

    /// Every item not past its TTL.
    var live: [Item] {
        guard let ttl = schema.ttlAttribute else { return all }
        return all.filter { item in (item[ttl]?.int).map { $0 >= now } ?? true }
    }

    mutating func store(_ item: Item, key: Item) {
        load(item, key: key)
        version += 1
    }

    mutating func remove(key: Item) {
        guard index[key] != nil else { return }
        all.removeAll { schema.key(of: $0) == key }
        rebuild()
        version += 1
    }

    mutating func removeAll(where predicate: (Item) -> Bool) {
        all.removeAll(where: predicate)
        rebuild()
    }

    private mutating func rebuild() {
        index = [:]
        for (position, item) in all.enumerated() {
            if let key = schema.key(of: item) { index[key] = position }
        }
    }
}

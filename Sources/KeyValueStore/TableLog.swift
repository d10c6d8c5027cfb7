import Dispatch
import Essentials
import SafeJSON
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// What one write does to a table.
enum LogChange: Sendable {
    case put(key: Item, item: Item)
    case delete(key: Item)
}

/// One table's log file as this process knows it: the items as of the first `offset` bytes of
/// the file, and the work of catching up with the lines other processes appended since,
/// appending a line, and compacting.
///
/// `access` guards `state` within the process; between processes, and between two stores on
/// one folder in one process, the `flock` on `<table>.lock` does. An operation that would
/// wait for either runs on the log's own serial queue, never blocking Swift's cooperative pool.
final class TableLog: @unchecked Sendable {
    let schema: TableSchema
    private let path: String
    private let lockPath: String
    private let directory: String
    private let queue: DispatchQueue
    /// Touched only while holding `access`.
    private var state: LogState
    /// The lock file and the table's file, kept open from one operation to the next (opening
    /// and closing both was most of an operation's system calls). Touched only while holding
    /// `access`; the table's file is checked against its path at every operation.
    private var lockDescriptor: Int32 = -1
    private var table: OpenTable?
    private let access = Mutex(())

    /// Compaction waits until at least this many lines are dead, so a small table is not
    /// rewritten for every few writes.
    static let minimumDeadLines = 1024

    init(schema: TableSchema, directory: String) {
        self.schema = schema
        self.directory = directory
        path = "\(directory)/\(schema.name).jsonl"
        lockPath = "\(directory)/\(schema.name).lock"
        queue = DispatchQueue(label: "file-store.\(schema.name)")
        state = LogState(schema: schema)
    }

    deinit {
        if lockDescriptor >= 0 { close(lockDescriptor) }
        if let table { close(table.fd) }
    }

    // MARK: Operations

    func read<T: Sendable>(now: @escaping @Sendable () -> Int64, _ body: @escaping @Sendable (LogItems) -> T) async throws(KeyValueError) -> T {
        try await perform(exclusive: false, inline: true) { lock throws(KeyValueError) -> T in
            if let table = try self.openTable(creating: false) {
                _ = try self.catchUp(table, lock: lock)
            } else {
                self.state = LogState(schema: self.schema)
            }
            self.state.items.now = now()
            return body(self.state.items)
        }
    }

    /// Catches up, lets `decide` choose a change (or none) from the items as they are, and
    /// appends it: the change is on disk when this returns.
    func write<T: Sendable>(
        now: @escaping @Sendable () -> Int64, _ decide: @escaping @Sendable (LogItems) throws(KeyValueError) -> (LogChange?, T)
    ) async throws(KeyValueError) -> T {
        let outcomes = try await write(now: now, [decide])
        guard let outcome = outcomes.first else { throw KeyValueError(.unavailable, "the write went undecided") }
        return try outcome.get()
    }

    /// Catches up, then lets each of `deciders` in turn choose a change (or none, or throw)
    /// from the items as the ones before it left them, and appends the changes together: they
    /// are on disk, with one sync, when this returns. When it is time to look at compacting,
    /// that happens afterwards on the log's queue, so no write waits for it.
    func write<T: Sendable>(
        now: @escaping @Sendable () -> Int64, _ deciders: [@Sendable (LogItems) throws(KeyValueError) -> (LogChange?, T)]
    ) async throws(KeyValueError) -> [Result<T, KeyValueError>] {
        let (outcomes, checkCompaction) = try await perform(exclusive: true, inline: DiskWaits.inPlace) {
            lock throws(KeyValueError) -> ([Result<T, KeyValueError>], Bool) in
            let table = try self.writableTable()
            let tail = try self.catchUp(table, lock: lock)
            self.state.items.now = now()
            var outcomes: [Result<T, KeyValueError>] = []
            outcomes.reserveCapacity(deciders.count)
            var changes: [LogChange] = []
            for decide in deciders {
                do throws(KeyValueError) {
                    let (change, result) = try decide(self.state.items)
                    if let change {
                        // Seen by the next decider; dropped with the state if the append fails.
                        self.state.items.apply(change)
                        changes.append(change)
                    }
                    outcomes.append(.success(result))
                } catch {
                    outcomes.append(.failure(error))
                }
            }
            guard !changes.isEmpty else { return (outcomes, false) }
            try self.append(changes, to: table.fd, cutting: tail == .torn)
            return (outcomes, self.state.lines >= self.state.nextCompactionCheck)
        }
        if checkCompaction {
            queue.async {
                // The write is durable already: a compaction that fails leaves the log as it
                // was (its temporary file removed) and is tried again at a later check.
                try? self.access.withLock { _ throws(KeyValueError) in
                    guard let lock = try self.lockFile(exclusive: true, wait: true) else { return }
                    defer { self.unlock(lock) }
                    _ = try self.catchUp(try self.writableTable(), lock: lock)
                    self.state.items.now = now()
                    if self.state.lines >= self.state.nextCompactionCheck { try self.compactIfDue(lock: lock) }
                }
            }
        }
        return outcomes
    }

    func compactNow(now: @escaping @Sendable () -> Int64) async throws(KeyValueError) {
        try await perform(exclusive: true, inline: false) { lock throws(KeyValueError) in
            _ = try self.catchUp(try self.writableTable(), lock: lock)
            self.state.items.now = now()
            try self.compact(lock: lock)
        }
    }

    /// Runs `body` holding the table's lock (shared or exclusive; `body` gets the lock file's
    /// descriptor, which also holds the compaction generation). When `inline` (reads) and
    /// neither this process nor another holds the lock, it runs here and now: a read is a few
    /// system calls, less than handing the work to another thread and back. Otherwise it runs
    /// on the log's queue, where waiting blocks no task. Writes go to the queue unless the
    /// process does one thing at a time (`DiskWaits.inPlace`): an `fdatasync` takes 50 µs on a
    /// quiet disk but tens of milliseconds on a busy one, and Swift's cooperative pool has one
    /// thread per core (measured: with writes run inline, even one at a time, the in-process
    /// suite missed its deadlines).
    private func perform<T: Sendable>(
        exclusive: Bool, inline: Bool, _ body: @escaping @Sendable (Int32) throws(KeyValueError) -> T
    ) async throws(KeyValueError) -> T {
        if inline {
            let attempt = access.withLockIfAvailable { _ -> Result<T, KeyValueError>? in
                do throws(KeyValueError) {
                    guard let lock = try self.lockFile(exclusive: exclusive, wait: false) else { return nil }
                    defer { self.unlock(lock) }
                    return .success(try body(lock))
                } catch {
                    return .failure(error)
                }
            }
            if let outcome = attempt ?? nil { return try outcome.get() }
        }
        return try await onQueue { () throws(KeyValueError) -> T in
            try self.access.withLock { _ throws(KeyValueError) -> T in
                guard let lock = try self.lockFile(exclusive: exclusive, wait: true) else {
                    throw Self.ioError("cannot lock \(self.lockPath)")
                }
                defer { self.unlock(lock) }
                return try body(lock)
            }
        }
    }

    private func onQueue<T: Sendable>(_ work: @escaping @Sendable () throws(KeyValueError) -> T) async throws(KeyValueError) -> T {
        let result = await withCheckedContinuation { (continuation: CheckedContinuation<Result<T, KeyValueError>, Never>) in
            queue.async { continuation.resume(returning: Result { () throws(KeyValueError) -> T in try work() }) }
        }
        return try result.get()
    }

    /// The lock file, locked; nil when `wait` is false and someone holds it. It stays open; a
    /// lock file found deleted once locked (the folder removed under a running process) is
    /// opened again by its path, so every process locks the same file.
    private func lockFile(exclusive: Bool, wait: Bool) throws(KeyValueError) -> Int32? {
        while true {
            if lockDescriptor < 0 {
                let lock = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
                guard lock >= 0 else {
                    if errno == ELOOP { throw KeyValueError(.unavailable, "\(lockPath) is a symbolic link: refused") }
                    throw Self.ioError("cannot open \(lockPath)")
                }
                lockDescriptor = lock
            }
            let lock = lockDescriptor
            while flock(lock, (exclusive ? LOCK_EX : LOCK_SH) | (wait ? 0 : LOCK_NB)) != 0 {
                if errno == EINTR { continue }
                if errno == EWOULDBLOCK && !wait { return nil }
                throw Self.ioError("cannot lock \(lockPath)")
            }
            var info = stat()
            if fstat(lock, &info) == 0, info.st_nlink > 0 { return lock }
            flock(lock, LOCK_UN)
            close(lock)
            lockDescriptor = -1
        }
    }

    private func unlock(_ lock: Int32) {
        flock(lock, LOCK_UN)
    }

    /// The table's file, as its path now names it (with what `lstat` says of it), open for
    /// reading and, unless it may not be written, appending; nil when there is none and
    /// `creating` is false. The descriptor is kept for the next operation while the path still
    /// names the same file.
    private func openTable(creating: Bool) throws(KeyValueError) -> OpenTable? {
        var info = stat()
        if lstat(path, &info) != 0 {
            guard errno == ENOENT else { throw Self.ioError("cannot stat \(path)") }
            forgetTable()
            guard creating else { return nil }
            // A new table: created under the exclusive lock, and the folder synced so the file
            // survives a crash of the machine with its first line.
            let created = open(path, O_RDWR | O_APPEND | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o600)
            guard created >= 0 else { throw openError() }
            syncDirectory()
            guard fstat(created, &info) == 0 else {
                close(created)
                throw Self.ioError("cannot stat \(path)")
            }
            return keep(OpenTable(fd: created, info: info, writable: true))
        }
        if (info.st_mode & S_IFMT) == S_IFLNK { throw KeyValueError(.corruptTable, "\(path) is a symbolic link: refused, and left as it is") }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            throw KeyValueError(.corruptTable, "\(path) is not a regular file: refused, and left as it is")
        }
        if var table, table.device == UInt64(info.st_dev), table.inode == UInt64(info.st_ino) {
            table.info = info
            self.table = table
            return table
        }
        forgetTable()
        var writable = true
        var fd = open(path, O_RDWR | O_APPEND | O_CLOEXEC | O_NOFOLLOW)
        if fd < 0, errno == EACCES || errno == EROFS {
            writable = false
            fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        }
        guard fd >= 0 else { throw openError() }
        // What was opened, should the path have changed since the `lstat`.
        guard fstat(fd, &info) == 0 else {
            close(fd)
            throw Self.ioError("cannot stat \(path)")
        }
        return keep(OpenTable(fd: fd, info: info, writable: writable))
    }

    /// The table's file for a write: created if there is none.
    private func writableTable() throws(KeyValueError) -> OpenTable {
        // Kept from a read when it could not be written: it may be writable now.
        if let table, !table.writable { forgetTable() }
        guard let table = try openTable(creating: true) else { throw Self.ioError("cannot create \(path)") }
        guard table.writable else {
            errno = EACCES
            throw Self.ioError("cannot open \(path) for writing")
        }
        return table
    }

    private func keep(_ table: OpenTable) -> OpenTable {
        self.table = table
        return table
    }

    private func forgetTable() {
        if let table { close(table.fd) }
        table = nil
    }

    private func openError() -> KeyValueError {
        if errno == ELOOP { return KeyValueError(.corruptTable, "\(path) is a symbolic link: refused, and left as it is") }
        return Self.ioError("cannot open \(path)")
    }

    // MARK: Catching up

    enum Tail: Equatable {
        /// The file ends with a line break (or a last record lacking only its line break).
        case clean
        /// The file ends with part of a line: a write that never finished (a process killed
        /// mid-write, or a machine that crashed before the line reached the disk). Never
        /// acknowledged; the next write cuts it off.
        case torn
    }

    /// Reads what was appended since `state.offset` (everything, if the file is not the one
    /// `state` came from) and applies it. A line that is not a record of this table throws
    /// `corruptTable`, and the state is dropped so the next operation reads afresh.
    private func catchUp(_ table: OpenTable, lock: Int32) throws(KeyValueError) -> Tail {
        do {
            return try readNewLines(table, lock: lock)
        } catch {
            state = LogState(schema: schema)
            throw error
        }
    }

    private func readNewLines(_ table: OpenTable, lock: Int32) throws(KeyValueError) -> Tail {
        let (fd, info) = (table.fd, table.info)
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            throw KeyValueError(.corruptTable, "\(path) is not a regular file: refused, and left as it is")
        }
        let identity = FileIdentity(info, generation: Self.generation(lock))
        let size = Int(info.st_size)
        if identity != state.identity || size < state.offset {
            state = LogState(schema: schema)
            state.identity = identity
        }
        guard size > state.offset else { return .clean }
        let bytes = try Self.readBytes(fd, from: state.offset, count: size - state.offset, path: path)

        var start = 0
        while let end = bytes[start...].firstIndex(of: Self.newline) {
            state.lineNumber += 1
            try apply(line: bytes[start..<end])
            start = end + 1
        }
        state.offset += start
        let tail = bytes[start...]
        guard !tail.isEmpty else { return .clean }
        return try classify(tail: tail)
    }

    private func apply(line: ArraySlice<UInt8>) throws(KeyValueError) {
        if line.allSatisfy({ $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\r") }) { return }
        guard let node = try? JSONNode.parse(Array(line)), let change = record(node) else { throw corrupt(line: state.lineNumber) }
        state.items.apply(change)
        state.lines += 1
    }

    private func record(_ node: JSONNode) -> LogChange? {
        guard let (deleted, item) = LogRecord.parse(node) else { return nil }
        if deleted { return schema.key(of: item) == item ? .delete(key: item) : nil }
        return schema.key(of: item).map { .put(key: $0, item: item) }
    }

    /// The bytes after the last line break: a last record missing only its line break (a file
    /// written by hand), part of a record of ours that never finished (torn: left alone), or
    /// something else (a foreign or damaged file: corrupt).
    private func classify(tail: ArraySlice<UInt8>) throws(KeyValueError) -> Tail {
        // A machine that crashed mid-append can leave the file longer than its data: zeros.
        let data = tail[..<(tail.lastIndex { $0 != 0 }.map { $0 + 1 } ?? tail.startIndex)]
        guard !data.contains(0) else { throw corrupt(line: state.lineNumber + 1) }
        if data.allSatisfy({ $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\r") }) { return .torn }
        do {
            let node = try JSONNode.parse(Array(data))
            guard let change = record(node) else { throw corrupt(line: state.lineNumber + 1) }
            state.items.apply(change)
            state.lines += 1
            state.lineNumber += 1
            state.offset += tail.count
            state.missingNewline = true
            return .clean
        } catch let error as JSONReadError {
            // Part of a line of ours: the document ended early and it begins as ours do.
            let endedEarly = error.offset >= data.count
            let ours = LogRecord.openings.contains { opening in
                data.count <= opening.count ? opening.starts(with: data) : data.starts(with: opening)
            }
            guard endedEarly, ours else { throw corrupt(line: state.lineNumber + 1) }
            return .torn
        } catch {
            throw corrupt(line: state.lineNumber + 1)
        }
    }

    private func corrupt(line: Int) -> KeyValueError {
        KeyValueError(.corruptTable, "\(path) line \(line) is not a DynamoDB JSON record of \(schema.name); the file was left as it is")
    }

    // MARK: Appending

    /// Appends `changes` (already applied to `state.items`) in one write and one sync.
    private func append(_ changes: [LogChange], to fd: Int32, cutting torn: Bool) throws(KeyValueError) {
        var line: [UInt8] = state.missingNewline ? [Self.newline] : []
        for change in changes {
            line += LogRecord.encode(change)
            line.append(Self.newline)
        }
        if torn {
            guard ftruncate(fd, off_t(state.offset)) == 0 else {
                state = LogState(schema: schema)
                throw Self.ioError("cannot cut the unfinished last line of \(path)")
            }
        }
        do throws(KeyValueError) {
            try Self.writeAll(fd, line, path: path)
            guard System.syncData(fd) == 0 else { throw Self.ioError("cannot sync \(path)") }
        } catch {
            // Not acknowledged: take back what may have gone, and read afresh next time.
            _ = ftruncate(fd, off_t(state.offset))
            state = LogState(schema: schema)
            throw error
        }
        state.offset += line.count
        state.lines += changes.count
        state.lineNumber += changes.count + (state.missingNewline ? 1 : 0)
        state.missingNewline = false
    }

    // MARK: Compacting

    /// Compacts when the dead lines (superseded, deleted, expired) are at least as many as the
    /// live items and at least `minimumDeadLines`. Otherwise it looks again once enough writes
    /// have gone by for that to be possible, and never sooner than half as many writes as
    /// there are live items: counting them walks them, so the walk costs a constant per write.
    /// (Items that expire meanwhile can make it due earlier; it is then found at that check.)
    private func compactIfDue(lock: Int32) throws(KeyValueError) {
        let live = state.items.liveCount
        let dead = state.lines - live
        if dead >= max(live, Self.minimumDeadLines) {
            try compact(lock: lock)
        } else {
            state.nextCompactionCheck = state.lines + Self.writesBeforeNextCheck(live: live, dead: dead)
        }
    }

    private static func writesBeforeNextCheck(live: Int, dead: Int) -> Int {
        max(max(live, minimumDeadLines) - dead, live / 2, 1)
    }

    /// Writes the live items, in key order, to a new file that is synced and renamed over the
    /// log (then the folder is synced): a crash leaves the old log or the new one. The
    /// generation in the lock file is bumped, so every other process reads the new file afresh
    /// even if the system gives it the inode number of an older one.
    private func compact(lock: Int32) throws(KeyValueError) {
        removeAbandonedCompactions()
        let live = state.items.live.sorted(by: schema.precedes)
        var bytes: [UInt8] = []
        for item in live {
            bytes += LogRecord.encode(.put(key: [:], item: item))
            bytes.append(Self.newline)
        }
        let temporary = "\(path).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else { throw Self.ioError("cannot create \(temporary)") }
        var info = stat()
        do throws(KeyValueError) {
            try Self.writeAll(fd, bytes, path: temporary)
            guard fsync(fd) == 0 else { throw Self.ioError("cannot fsync \(temporary)") }
            guard fstat(fd, &info) == 0 else { throw Self.ioError("cannot stat \(temporary)") }
        } catch {
            close(fd)
            unlink(temporary)
            throw error
        }
        close(fd)
        let generation = Self.generation(lock) &+ 1
        guard rename(temporary, path) == 0 else {
            let error = Self.ioError("cannot rename \(temporary) to \(path)")
            unlink(temporary)
            throw error
        }
        syncDirectory()
        Self.setGeneration(lock, generation)
        // The descriptor kept is the file renamed over: the next operation opens the new one.
        forgetTable()

        var compacted = LogState(schema: schema)
        compacted.identity = FileIdentity(info, generation: generation)
        compacted.items = state.items
        compacted.items.removeExpired()
        compacted.offset = bytes.count
        compacted.lines = live.count
        compacted.lineNumber = live.count
        compacted.nextCompactionCheck = live.count + Self.writesBeforeNextCheck(live: live.count, dead: 0)
        state = compacted
    }

    /// Removes temporary files of compactions that never finished (a process killed before
    /// its rename). Compaction happens only under the exclusive lock, which the caller holds,
    /// so any such file found now belongs to no one.
    private func removeAbandonedCompactions() {
        guard let folder = opendir(directory) else { return }
        defer { closedir(folder) }
        let prefix = "\(schema.name).jsonl.tmp-"
        var abandoned: [String] = []
        while let entry = readdir(folder) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name.hasPrefix(prefix) { abandoned.append(name) }
        }
        for name in abandoned { unlink("\(directory)/\(name)") }
    }

    // MARK: Files

    private static let newline = UInt8(ascii: "\n")

    /// The compaction generation, kept in the first 8 bytes of the lock file (0 when empty).
    private static func generation(_ lock: Int32) -> UInt64 {
        var value: UInt64 = 0
        let count = withUnsafeMutableBytes(of: &value) { pread(lock, $0.baseAddress, 8, 0) }
        return count == 8 ? UInt64(littleEndian: value) : 0
    }

    private static func setGeneration(_ lock: Int32, _ generation: UInt64) {
        var value = generation.littleEndian
        _ = withUnsafeBytes(of: &value) { pwrite(lock, $0.baseAddress, 8, 0) }
    }

    private static func readBytes(_ fd: Int32, from offset: Int, count: Int, path: String) throws(KeyValueError) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let got = bytes.withUnsafeMutableBytes { buffer in
                pread(fd, buffer.baseAddress.map { $0 + done }, count - done, off_t(offset + done))
            }
            if got < 0 {
                if errno == EINTR { continue }
                throw ioError("cannot read \(path)")
            }
            if got == 0 { break }
            done += got
        }
        return done == count ? bytes : Array(bytes[..<done])
    }

    private static func writeAll(_ fd: Int32, _ bytes: [UInt8], path: String) throws(KeyValueError) {
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { System.write(fd, $0, from: offset) }
            if written < 0 {
                if errno == EINTR { continue }
                throw ioError("cannot write \(path)")
            }
            offset += written
        }
    }

    private func syncDirectory() {
        let folder = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if folder >= 0 {
            fsync(folder)
            close(folder)
        }
    }

    static func ioError(_ message: String) -> KeyValueError {
        KeyValueError(.unavailable, "\(message): \(String(cString: strerror(errno)))")
    }
}

/// The table's file held open: its descriptor, what `stat` last said of it, and whether it
/// was opened for appending.
private struct OpenTable {
    let fd: Int32
    var info: stat
    let writable: Bool

    var device: UInt64 { UInt64(info.st_dev) }
    var inode: UInt64 { UInt64(info.st_ino) }
}

/// Which file a state was read from: device and inode, and the compaction generation.
private struct FileIdentity: Equatable {
    let device: UInt64
    let inode: UInt64
    let generation: UInt64

    init(_ info: stat, generation: UInt64) {
        device = UInt64(info.st_dev)
        inode = UInt64(info.st_ino)
        self.generation = generation
    }
}

private struct LogState {
    var identity: FileIdentity?
    /// Bytes of the file applied; always just after a line break (or at the end of a last
    /// record that lacks one: `missingNewline`).
    var offset = 0
    /// Records applied (blank lines not counted): with the live items, what says how many
    /// lines are dead.
    var lines = 0
    /// Physical lines read, for error messages.
    var lineNumber = 0
    var missingNewline = false
    var nextCompactionCheck = 0
    var items: LogItems

    init(schema: TableSchema) { items = LogItems(schema: schema) }
}

/// The items of a table by key, and their keys by partition key value (for queries). An
/// item past its TTL is kept until the next compaction but counts as gone, as it soon is in
/// DynamoDB.
struct LogItems: Sendable {
    let schema: TableSchema
    var now: Int64 = 0
    private var items: [Item: Item] = [:]
    private var partitions: [AttributeValue: Set<Item>] = [:]

    init(schema: TableSchema) { self.schema = schema }

    func item(for key: Item) -> Item? {
        guard let item = items[key], isLive(item) else { return nil }
        return item
    }

    func hasRecord(for key: Item) -> Bool { items[key] != nil }

    var live: [Item] { items.values.filter(isLive) }

    var liveCount: Int { items.values.reduce(0) { $0 + (isLive($1) ? 1 : 0) } }

    /// The live items with this partition key value, in sort key order.
    func partition(_ value: AttributeValue) -> [Item] {
        let matching = (partitions[value] ?? []).compactMap { item(for: $0) }
        return matching.sorted(by: schema.precedes)
    }

    private func isLive(_ item: Item) -> Bool {
        guard let ttl = schema.ttlAttribute, let expiry = item[ttl]?.int else { return true }
        return expiry >= now
    }

    mutating func apply(_ change: LogChange) {
        switch change {
        case .put(let key, let item):
            items[key] = item
            if let value = key[schema.partitionKey] { partitions[value, default: []].insert(key) }
        case .delete(let key):
            guard items.removeValue(forKey: key) != nil, let value = key[schema.partitionKey] else { return }
            partitions[value]?.remove(key)
            if partitions[value]?.isEmpty == true { partitions[value] = nil }
        }
    }

    mutating func removeExpired() {
        for (key, item) in items where !isLive(item) { apply(.delete(key: key)) }
    }
}

/// One line of the log: `{"Item": {...}}` (DynamoDB's JSON import format) or
/// `{"Deleted": {key}}`, converted straight from the reader's tree (a table of 100,000 lines
/// is read when a process starts: no `Decodable` machinery per attribute).
private enum LogRecord {
    /// How a line of ours begins (`Item` or `Deleted` is the one member).
    static let openings = [Array(#"{"Item":{"#.utf8), Array(#"{"Deleted":{"#.utf8)]

    /// The item or deleted key a line holds; nil if it is not a record.
    static func parse(_ node: JSONNode) -> (deleted: Bool, item: Item)? {
        guard case .object(let members) = node, members.count == 1, let member = members.first,
            member.key == "Item" || member.key == "Deleted", let item = AttributeValue.item(member.value)
        else { return nil }
        return (member.key == "Deleted", item)
    }

    static func encode(_ change: LogChange) -> [UInt8] {
        switch change {
        case .put(_, let item): JSONNode.object([(key: "Item", value: AttributeValue.node(of: item))]).encoded()
        case .delete(let key): JSONNode.object([(key: "Deleted", value: AttributeValue.node(of: key))]).encoded()
        }
    }
}

extension AttributeValue {
    /// An item from DynamoDB JSON already read by the guarded reader; nil when it is not one.
    static func item(_ node: JSONNode) -> Item? {
        guard case .object(let members) = node else { return nil }
        var item: Item = [:]
        item.reserveCapacity(members.count)
        for member in members {
            guard let value = AttributeValue(node: member.value) else { return nil }
            item[member.key] = value
        }
        return item
    }

    init?(node: JSONNode) {
        guard case .object(let members) = node, members.count == 1, let member = members.first else { return nil }
        switch (member.key, member.value) {
        case ("S", .string(let value)): self = .s(value)
        case ("N", .string(let value)): self = .n(value)
        case ("B", .string(let value)):
            guard let bytes = Base64.decode(value) else { return nil }
            self = .b(Array(bytes))
        case ("BOOL", .bool(let value)): self = .bool(value)
        case ("NULL", .bool): self = .null
        case ("M", let value):
            guard let map = Self.item(value) else { return nil }
            self = .m(map)
        case ("L", .array(let elements)):
            var list: [AttributeValue] = []
            list.reserveCapacity(elements.count)
            for element in elements {
                guard let value = AttributeValue(node: element) else { return nil }
                list.append(value)
            }
            self = .l(list)
        case ("SS", .array(let elements)):
            guard let strings = Self.strings(elements) else { return nil }
            self = .ss(strings)
        case ("NS", .array(let elements)):
            guard let strings = Self.strings(elements) else { return nil }
            self = .ns(strings)
        case ("BS", .array(let elements)):
            guard let strings = Self.strings(elements) else { return nil }
            var sets: [[UInt8]] = []
            for text in strings {
                guard let bytes = Base64.decode(text) else { return nil }
                sets.append(Array(bytes))
            }
            self = .bs(sets)
        default: return nil
        }
    }

    private static func strings(_ elements: [JSONNode]) -> [String]? {
        var strings: [String] = []
        strings.reserveCapacity(elements.count)
        for element in elements {
            guard case .string(let text) = element else { return nil }
            strings.append(text)
        }
        return strings
    }

    static func node(of item: Item) -> JSONNode { .dictionary(item.mapValues(\.node)) }

    /// DynamoDB JSON, as `encode(to:)` writes it.
    var node: JSONNode {
        switch self {
        case .s(let value): ["S": .string(value)]
        case .n(let value): ["N": .string(value)]
        case .b(let value): ["B": .string(Base64.encode(value))]
        case .bool(let value): ["BOOL": .bool(value)]
        case .null: ["NULL": true]
        case .m(let value): ["M": Self.node(of: value)]
        case .l(let value): ["L": .array(value.map(\.node))]
        case .ss(let value): ["SS": .array(value.map(JSONNode.string))]
        case .ns(let value): ["NS": .array(value.map(JSONNode.string))]
        case .bs(let value): ["BS": .array(value.map { .string(Base64.encode($0)) })]
        }
    }
}

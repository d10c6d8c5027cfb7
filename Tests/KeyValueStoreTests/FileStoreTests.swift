import Essentials
import Foundation
import KeyValueStore
import TestSupport
import Testing

@Suite struct FileStoreTests {
    let table = TableSchema(name: "kv-test", partitionKey: "id")

    @Test func tableFileIsDynamoDBJSONImportFormat() async throws {
        let directory = Stores.temporaryDirectory()
        let store = try FileStore(directory: directory, tables: [table])
        try await store.put(table, item: ["id": .s("a"), "n": .n("1")])
        try await store.put(table, item: ["id": .s("b"), "ok": .bool(true)])
        let text = try String(contentsOfFile: "\(directory)/kv-test.jsonl", encoding: .utf8)
        let lines = text.split(separator: "\n")
        #expect(lines.count == 2)
        #expect(lines[0] == #"{"Item":{"id":{"S":"a"},"n":{"N":"1"}}}"#)
        #expect(lines[1] == #"{"Item":{"id":{"S":"b"},"ok":{"BOOL":true}}}"#)
    }

    /// How many of the same conditional put (item absent), one task per store given, were written.
    static func winners(of stores: [FileStore], table: TableSchema) async -> Int {
        await withTaskGroup(of: Bool.self) { group in
            for (index, store) in stores.enumerated() {
                group.addTask {
                    do {
                        try await store.put(table, item: ["id": .s("race"), "by": .number(index)], condition: .itemAbsent)
                        return true
                    } catch {
                        return false
                    }
                }
            }
            return await group.reduce(0) { $0 + ($1 ? 1 : 0) }
        }
    }

    /// Every other process waits for the disk on its task's thread, as a function's Lambda loop
    /// does; the others on the table's queue, as `serve` does.
    static func diskWaits(_ index: Int) -> [String: String] { index % 2 == 0 ? ["DISK_WAITS": "in-place"] : [:] }

    @Test func severalProcessesMakingTheSameConditionalPutExactlyOneWins() async throws {
        let directory = Stores.temporaryDirectory()
        let results = try await withThrowingTaskGroup(of: String.self) { group in
            for index in 0..<8 {
                group.addTask {
                    // Half wait for the disk in place (a Lambda loop), half on the queue (`serve`).
                    try await Executables.run("kvtool", environment: Self.diskWaits(index), arguments: ["claim", directory, "wamid.same"]).stdout
                }
            }
            return try await group.reduce(into: [String]()) { $0.append($1.trimmingCharacters(in: .whitespacesAndNewlines)) }
        }
        #expect(results.filter { $0 == "won" }.count == 1)
        #expect(results.filter { $0 == "lost" }.count == 7)
    }

    @Test func tasksWaitingForTheDiskInPlaceStillHaveOneWinnerAndLoseNoUpdate() async throws {
        let store = try FileStore(directory: Stores.temporaryDirectory(), tables: [table])
        let (winners, updated) = try await DiskWaits.$inPlace.withValue(true) {
            // Most find the table's lock taken and go to its queue; one at a time runs in place.
            let winners = await Self.winners(of: Array(repeating: store, count: 16), table: table)
            try await withThrowingTaskGroup(of: Void.self) { group in
                for index in 0..<16 {
                    group.addTask {
                        _ = try await store.write(table, [.update(key: ["id": .s("shared")], set: ["t\(index)": .bool(true)])])
                        try await store.update(table, key: ["id": .s("shared")], set: ["u\(index)": .bool(true)])
                    }
                }
                try await group.waitForAll()
            }
            return (winners, try await store.get(table, key: ["id": .s("shared")]))
        }
        #expect(winners == 1)
        #expect(updated?.count == 1 + 32)
    }

    @Test func manyProcessesUpdatingLoseNoUpdate() async throws {
        let directory = Stores.temporaryDirectory()
        let processes = 6, updates = 20
        try await withThrowingTaskGroup(of: Int32.self) { group in
            for index in 0..<processes {
                group.addTask {
                    try await Executables.run(
                        "kvtool", environment: Self.diskWaits(index), arguments: ["update", directory, "shared", "p\(index)", String(updates)]
                    ).exitCode
                }
                group.addTask {
                    try await Executables.run("kvtool", environment: Self.diskWaits(index + 1), arguments: ["count", directory, "counter", String(updates)])
                        .exitCode
                }
            }
            for try await code in group { #expect(code == 0) }
        }
        let store = try FileStore(directory: directory, tables: [table])
        let shared = try #require(try await store.get(table, key: ["id": .s("shared")]))
        #expect(shared.count == 1 + processes * updates)
        let counter = try await store.get(table, key: ["id": .s("counter")])
        #expect(counter?["count"] == .number(processes * updates))
    }

    @Test func aProcessKilledMidWriteLosesNothingItAcknowledged() async throws {
        let directory = Stores.temporaryDirectory()
        for round in 0..<6 {
            let (process, log) = try Executables.start("kvtool", environment: Self.diskWaits(round), arguments: ["churn", directory])
            // Killed after 300 to 1,800 acknowledged writes (a compaction comes every 1,024),
            // at a moment that differs from round to round.
            let target = 300 + round * 300
            let deadline = Date().addingTimeInterval(30)
            while (try? String(contentsOf: log, encoding: .utf8).count { $0 == "\n" }) ?? 0 < target, Date() < deadline {
                try await Task.sleep(for: .milliseconds(5))
            }
            try await Task.sleep(for: .milliseconds(round * 7))
            kill(process.processIdentifier, SIGKILL)
            await Executables.wait(process)
            // What the killed process was told was written (each put's "INDEX ROUND" line).
            var acknowledged: [String: Int64] = [:]
            for line in try String(contentsOf: log, encoding: .utf8).split(separator: "\n") {
                let fields = line.split(separator: " ")
                if fields.count == 2, let value = Int64(fields[1]) { acknowledged["item-\(fields[0])"] = value }
            }
            #expect(acknowledged.count == 20)
            let store = try FileStore(directory: directory, tables: [table])
            for (id, written) in acknowledged {
                let item = try await store.get(table, key: ["id": .s(id)])
                #expect(item?["padding"]?.string?.count == 2000)
                #expect((item?["round"]?.int ?? 0) >= written, "\(id) was acknowledged at round \(written)")
            }
            // The next process writes after whatever the killed one left.
            try await store.put(table, item: ["id": .s("after-\(round)")])
        }
        // A compaction cut short leaves a temporary file; the next compaction removes it.
        try Data("partial".utf8).write(to: URL(fileURLWithPath: "\(directory)/kv-test.jsonl.tmp-1-2"))
        try await FileStore(directory: directory, tables: [table]).compact(table)
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory).sorted() == ["kv-test.jsonl", "kv-test.lock"])
    }

    @Test func corruptOrForeignFileIsAClearErrorAndIsNeverOverwritten() async throws {
        for content in ["{\"Item\":{\"id\":{\"S\":\"a\"}}}\n{not json", "[1,2,3]", "{\"Item\":{\"other\":{\"S\":\"no key\"}}}", "\u{0}\u{1}binary"] {
            let directory = Stores.temporaryDirectory()
            let path = "\(directory)/kv-test.jsonl"
            try Data(content.utf8).write(to: URL(fileURLWithPath: path))
            let store = try FileStore(directory: directory, tables: [table])
            do {
                _ = try await store.get(table, key: ["id": .s("a")])
                Issue.record("a corrupt file was read")
            } catch {
                #expect(error.code == .corruptTable)
                #expect(error.message.contains("kv-test.jsonl"))
            }
            do {
                try await store.put(table, item: ["id": .s("new")])
                Issue.record("a corrupt file was written")
            } catch {
                #expect(error.code == .corruptTable)
            }
            #expect(try String(contentsOfFile: path, encoding: .utf8) == content)
        }
    }

    @Test func expiredItemsAreGoneAtOnceAndDroppedByCompaction() async throws {
        let directory = Stores.temporaryDirectory()
        let ttlTable = TableSchema(name: "kv-test", partitionKey: "id", ttlAttribute: "expiresAt")
        let store = try FileStore(directory: directory, tables: [ttlTable], now: { 1_000 })
        try await store.put(ttlTable, item: ["id": .s("old"), "expiresAt": .n("999")])
        try await store.put(ttlTable, item: ["id": .s("new"), "expiresAt": .n("2000")])
        #expect(try await store.get(ttlTable, key: ["id": .s("old")]) == nil)
        try await store.put(ttlTable, item: ["id": .s("old"), "again": .bool(true)], condition: .itemAbsent)
        try await store.put(ttlTable, item: ["id": .s("gone"), "expiresAt": .n("10")])
        try await store.compact(ttlTable)
        let text = try String(contentsOfFile: "\(directory)/kv-test.jsonl", encoding: .utf8)
        #expect(text == #"{"Item":{"expiresAt":{"N":"2000"},"id":{"S":"new"}}}"# + "\n" + #"{"Item":{"again":{"BOOL":true},"id":{"S":"old"}}}"# + "\n")
    }

    // MARK: The log

    @Test func everyWriteAppendsOneLineAndDeletesAreRecorded() async throws {
        let directory = Stores.temporaryDirectory()
        let store = try FileStore(directory: directory, tables: [table])
        try await store.put(table, item: ["id": .s("a"), "n": .n("1")])
        try await store.update(table, key: ["id": .s("a")], set: ["n": .n("2")])
        try await store.delete(table, key: ["id": .s("a")])
        try await store.delete(table, key: ["id": .s("never")])
        let lines = try String(contentsOfFile: "\(directory)/kv-test.jsonl", encoding: .utf8).split(separator: "\n")
        #expect(lines == [#"{"Item":{"id":{"S":"a"},"n":{"N":"1"}}}"#, #"{"Item":{"id":{"S":"a"},"n":{"N":"2"}}}"#, #"{"Deleted":{"id":{"S":"a"}}}"#])
        // A fresh process (a new store) reads the same table back from the log.
        let reopened = try FileStore(directory: directory, tables: [table])
        #expect(try await reopened.get(table, key: ["id": .s("a")]) == nil)
        try await store.put(table, item: ["id": .s("a"), "n": .n("3")])
        #expect(try await reopened.get(table, key: ["id": .s("a")])?["n"] == .n("3"))
    }

    @Test func everyAttributeTypeComesBackAsItWasWritten() async throws {
        let directory = Stores.temporaryDirectory()
        let id = AttributeValue.s("all/types \"quoted\" \u{1} é")
        let item: Item = [
            "id": id, "n": .n("-1.5e3"), "b": .b([0, 1, 255]), "yes": .bool(false), "nothing": .null,
            "m": .m(["inner": .l([.s("x"), .n("2"), .m([:])])]), "ss": .ss(["a", "b"]), "ns": .ns(["1", "2"]), "bs": .bs([[1], [2, 3]]),
        ]
        try await FileStore(directory: directory, tables: [table]).put(table, item: item)
        #expect(try await FileStore(directory: directory, tables: [table]).get(table, key: ["id": id]) == item)
        // The line is DynamoDB JSON that Foundation's decoder reads as the same item.
        let line = try #require(try String(contentsOfFile: "\(directory)/kv-test.jsonl", encoding: .utf8).split(separator: "\n").first)
        #expect(try JSONDecoder().decode([String: Item].self, from: Data(line.utf8))["Item"] == item)
    }

    @Test func aTableOfTheEarlierFormatIsReadAndUpgradedWithoutAStep() async throws {
        let directory = Stores.temporaryDirectory()
        let path = "\(directory)/kv-test.jsonl"
        // What the earlier store wrote: every line an item, keys unique.
        let earlier = (0..<3).map { #"{"Item":{"id":{"S":"k\#($0)"},"v":{"N":"\#($0)"}}}"# }.joined(separator: "\n") + "\n"
        try earlier.write(toFile: path, atomically: true, encoding: .utf8)
        let store = try FileStore(directory: directory, tables: [table])
        #expect(try await store.get(table, key: ["id": .s("k2")])?["v"] == .n("2"))
        try await store.update(table, key: ["id": .s("k1")], set: ["v": .n("10")])
        #expect(try String(contentsOfFile: path, encoding: .utf8) == earlier + #"{"Item":{"id":{"S":"k1"},"v":{"N":"10"}}}"# + "\n")
        // A file written by hand without its last line break is read, and written after.
        let directory2 = Stores.temporaryDirectory()
        try #"{"Item":{"id":{"S":"x"}}}"#.write(toFile: "\(directory2)/kv-test.jsonl", atomically: true, encoding: .utf8)
        let store2 = try FileStore(directory: directory2, tables: [table])
        #expect(try await store2.get(table, key: ["id": .s("x")]) != nil)
        try await store2.put(table, item: ["id": .s("y")])
        #expect(
            try String(contentsOfFile: "\(directory2)/kv-test.jsonl", encoding: .utf8) == #"{"Item":{"id":{"S":"x"}}}"# + "\n" + #"{"Item":{"id":{"S":"y"}}}"#
                + "\n")
    }

    @Test func anUnfinishedLastLineIsIgnoredAndCutByTheNextWrite() async throws {
        for torn in [
            #"{"Item":{"id":{"S":"b"},"pad"#, #"{"Del"#, #"{"Item":{"id":{"S":"b"}"# + String(repeating: "\u{0}", count: 40),
            String(repeating: "\u{0}", count: 4096),
        ] {
            let directory = Stores.temporaryDirectory()
            let path = "\(directory)/kv-test.jsonl"
            let intact = #"{"Item":{"id":{"S":"a"}}}"# + "\n"
            try (intact + torn).write(toFile: path, atomically: true, encoding: .utf8)
            let store = try FileStore(directory: directory, tables: [table])
            #expect(try await store.get(table, key: ["id": .s("a")]) != nil)
            #expect(try await store.get(table, key: ["id": .s("b")]) == nil)
            try await store.put(table, item: ["id": .s("c")])
            #expect(try String(contentsOfFile: path, encoding: .utf8) == intact + #"{"Item":{"id":{"S":"c"}}}"# + "\n")
        }
    }

    @Test func queriesAndScansFollowTheLog() async throws {
        let sorted = TableSchema(name: "kv-sorted", partitionKey: "tenant", sortKey: "at")
        let directory = Stores.temporaryDirectory()
        let store = try FileStore(directory: directory, tables: [sorted])
        for at in [3, 1, 2] { try await store.put(sorted, item: ["tenant": .s("t1"), "at": .number(at)]) }
        try await store.put(sorted, item: ["tenant": .s("t2"), "at": .number(1)])
        try await store.delete(sorted, key: ["tenant": .s("t1"), "at": .number(2)])
        let other = try FileStore(directory: directory, tables: [sorted])
        #expect(try await other.query(sorted, partitionKey: .s("t1")).map { $0["at"] } == [.n("1"), .n("3")])
        let page = try await other.scan(sorted, after: nil, limit: 2)
        #expect(page.items.map { $0["tenant"] } == [.s("t1"), .s("t1")])
        let rest = try await other.scan(sorted, after: page.next, limit: 2)
        #expect(rest.items.map { $0["tenant"] } == [.s("t2")] && rest.next == nil)
    }

    @Test func theLogIsCompactedWhenDeadLinesOutnumberLiveItems() async throws {
        let directory = Stores.temporaryDirectory()
        let path = "\(directory)/kv-test.jsonl"
        let store = try FileStore(directory: directory, tables: [table])
        func lineCount() throws -> Int { try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").count }
        for index in 0..<10 { try await store.put(table, item: ["id": .s("k\(index)"), "round": .number(0)]) }
        var most = 0
        for round in 1...300 {
            for index in 0..<10 { try await store.put(table, item: ["id": .s("k\(index)"), "round": .number(round)]) }
            most = max(most, try lineCount())
        }
        // 3,010 writes of 10 items: the log never holds much more than the 1,024 dead lines
        // compaction waits for, and every item is as last written.
        #expect(most <= 10 + 1024 + 10)
        #expect(try lineCount() < 3010)
        let other = try FileStore(directory: directory, tables: [table])
        for index in 0..<10 { #expect(try await other.get(table, key: ["id": .s("k\(index)")])?["round"] == .number(300)) }
        // No temporary file is left behind.
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory).sorted() == ["kv-test.jsonl", "kv-test.lock"])
    }

    @Test func anotherProcessCompactingIsNoticedEvenOnAReusedInode() async throws {
        let directory = Stores.temporaryDirectory()
        let reader = try FileStore(directory: directory, tables: [table])
        let writer = try FileStore(directory: directory, tables: [table])
        for round in 0..<5 {
            try await writer.put(table, item: ["id": .s("a"), "round": .number(round)])
            try await writer.delete(table, key: ["id": .s("b\(round)")])
            try await writer.put(table, item: ["id": .s("b\(round + 1)")])
            #expect(try await reader.get(table, key: ["id": .s("a")])?["round"] == .number(round))
            try await writer.compact(table)
            #expect(try await reader.get(table, key: ["id": .s("b\(round + 1)")]) != nil)
            #expect(try await reader.get(table, key: ["id": .s("b\(round)")]) == nil)
        }
    }

    /// The store keeps its files open between operations; what is done to them by hand while
    /// it runs is still seen at the next operation.
    @Test func aTableReplacedOrRemovedByHandIsSeenAtTheNextOperation() async throws {
        let directory = Stores.temporaryDirectory()
        let path = "\(directory)/kv-test.jsonl"
        let store = try FileStore(directory: directory, tables: [table])
        try await store.put(table, item: ["id": .s("a"), "v": .number(1)])
        #expect(try await store.get(table, key: ["id": .s("a")])?["v"] == .number(1))

        // Replaced by another file (a backup put back): its items, not the ones read before.
        let backup = "\(directory)/backup.jsonl"
        try Data(#"{"Item":{"id":{"S":"b"},"v":{"N":"2"}}}"#.utf8 + [10]).write(to: URL(fileURLWithPath: backup))
        #expect(rename(backup, path) == 0)
        #expect(try await store.get(table, key: ["id": .s("a")]) == nil)
        #expect(try await store.get(table, key: ["id": .s("b")])?["v"] == .number(2))

        // Removed: empty, and the next write makes a new file with that one item.
        #expect(unlink(path) == 0)
        #expect(try await store.get(table, key: ["id": .s("b")]) == nil)
        try await store.put(table, item: ["id": .s("c")])
        #expect(try String(contentsOfFile: path, encoding: .utf8) == #"{"Item":{"id":{"S":"c"}}}"# + "\n")

        // Replaced by a foreign file: reported, and left as it is.
        try Data("[1,2,3]".utf8).write(to: URL(fileURLWithPath: backup))
        #expect(rename(backup, path) == 0)
        await #expect(throws: KeyValueError.self) { try await store.put(table, item: ["id": .s("d")]) }
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "[1,2,3]")
    }

    @Test func aFolderRemovedAndMadeAgainUnderARunningStoreKeepsOneLock() async throws {
        let directory = Stores.temporaryDirectory()
        let running = try FileStore(directory: directory, tables: [table])
        try await running.put(table, item: ["id": .s("before")])
        try FileManager.default.removeItem(atPath: directory)
        let fresh = try FileStore(directory: directory, tables: [table])
        #expect(try await running.get(table, key: ["id": .s("before")]) == nil)
        // Both lock the lock file the folder now holds: one conditional put wins.
        let winners = await Self.winners(of: [running, fresh, running, fresh], table: table)
        #expect(winners == 1)
        #expect(try await fresh.get(table, key: ["id": .s("race")]) == (try await running.get(table, key: ["id": .s("race")])))
    }
}

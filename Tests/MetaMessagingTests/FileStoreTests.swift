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

    @Test func severalProcessesMakingTheSameConditionalPutExactlyOneWins() async throws {
        let directory = Stores.temporaryDirectory()
        let results = try await withThrowingTaskGroup(of: String.self) { group in
            for _ in 0..<8 {
                group.addTask {
                    try await Executables.run("kvtool", environment: [:], arguments: ["claim", directory, "wamid.same"]).stdout
                }
            }
            return try await group.reduce(into: [String]()) { $0.append($1.trimmingCharacters(in: .whitespacesAndNewlines)) }
        }
        #expect(results.filter { $0 == "won" }.count == 1)
        #expect(results.filter { $0 == "lost" }.count == 7)
    }

    @Test func manyProcessesUpdatingLoseNoUpdate() async throws {
        let directory = Stores.temporaryDirectory()
        let processes = 6, updates = 20
        try await withThrowingTaskGroup(of: Int32.self) { group in
            for index in 0..<processes {
                group.addTask {
                    try await Executables.run("kvtool", environment: [:], arguments: ["update", directory, "shared", "p\(index)", String(updates)]).exitCode
                }
                group.addTask {
                    try await Executables.run("kvtool", environment: [:], arguments: ["count", directory, "counter", String(updates)]).exitCode
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

    @Test func aCrashMidWriteNeverCorruptsTheTable() async throws {
        let directory = Stores.temporaryDirectory()
        for round in 0..<4 {
            let (process, _) = try Executables.start("kvtool", environment: [:], arguments: ["churn", directory])
            try await Task.sleep(for: .milliseconds(150 + round * 40))
            kill(process.processIdentifier, SIGKILL)
            await Executables.wait(process)
            let store = try FileStore(directory: directory, tables: [table])
            let item = try await store.get(table, key: ["id": .s("item-0")])
            #expect(item?["padding"]?.string?.count == 2000)
        }
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

    @Test func expiredItemsAreGoneAndDroppedOnTheNextWrite() async throws {
        let directory = Stores.temporaryDirectory()
        let ttlTable = TableSchema(name: "kv-test", partitionKey: "id", ttlAttribute: "expiresAt")
        let store = try FileStore(directory: directory, tables: [ttlTable], now: { 1_000 })
        try await store.put(ttlTable, item: ["id": .s("old"), "expiresAt": .n("999")])
        try await store.put(ttlTable, item: ["id": .s("new"), "expiresAt": .n("2000")])
        #expect(try await store.get(ttlTable, key: ["id": .s("old")]) == nil)
        try await store.put(ttlTable, item: ["id": .s("old"), "again": .bool(true)], condition: .itemAbsent)
        let text = try String(contentsOfFile: "\(directory)/kv-test.jsonl", encoding: .utf8)
        #expect(!text.contains("999"))
    }
}

// A test helper: file-store operations from a separate process, for the cross-process tests.
//   kvtool claim DIR KEY           conditional put (item absent); prints won or lost
//   kvtool update DIR KEY TAG N    N updates, each setting attribute TAG_i on the item KEY
//   kvtool count DIR KEY N         N optimistic increments of `count` (get, conditional put)
//   kvtool churn DIR               rewrites 20 large items forever (to be killed mid-write),
//                                  writing "INDEX ROUND" to stderr after each put returns
// With DISK_WAITS=in-place, writes wait for the disk on the task's thread, as in a function's
// Lambda loop; otherwise on the table's queue, as in `serve`.
import Essentials
import Foundation
import KeyValueStore

let table = TableSchema(name: "kv-test", partitionKey: "id")

/// A conditional put: true if it was written, false if its condition failed.
func conditionalPut(_ store: FileStore, _ item: Item, _ condition: Condition) async throws -> Bool {
    do {
        try await store.put(table, item: item, condition: condition)
        return true
    } catch {
        if error.code == .conditionFailed { return false }
        throw error
    }
}
let arguments = CommandLine.arguments
guard arguments.count >= 3 else { fatalError("usage") }
let store = try FileStore(directory: arguments[2], tables: [table])

func run() async throws {
    switch arguments[1] {
    case "claim":
        let won = try await conditionalPut(store, ["id": .s(arguments[3]), "by": .s(arguments[3])], .itemAbsent)
        print(won ? "won" : "lost")
    case "update":
        let count = Int(arguments[5]) ?? 0
        for index in 0..<count {
            try await store.update(table, key: ["id": .s(arguments[3])], set: ["\(arguments[4])_\(index)": .bool(true)])
        }
    case "count":
        let count = Int(arguments[4]) ?? 0
        var done = 0
        while done < count {
            let key: Item = ["id": .s(arguments[3])]
            let current = try await store.get(table, key: key)
            let value = current?["count"]?.int ?? 0
            let condition: Condition = current == nil ? .itemAbsent : .equals("count", .number(value))
            if try await conditionalPut(store, key.merging(["count": .number(value + 1)]) { $1 }, condition) {
                done += 1
            }
        }
    case "churn":
        let padding = String(repeating: "x", count: 2000)
        var round = 0
        while true {
            round += 1
            for index in 0..<20 {
                try await store.put(table, item: ["id": .s("item-\(index)"), "round": .number(round), "padding": .s(padding)])
                FileHandle.standardError.write(Data("\(index) \(round)\n".utf8))
            }
        }
    default:
        fatalError("unknown command")
    }
}

try await DiskWaits.$inPlace.withValue(ProcessInfo.processInfo.environment["DISK_WAITS"] == "in-place") { try await run() }

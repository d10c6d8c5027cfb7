import Synchronization

/// Runs `body` over `items` at most `limit` at a time (at least one), starting the next as
/// each ends; the results come back in the items' order, whatever order they ended in.
/// `receive` and `process` answer different conversations this way.
public func mapConcurrently<Item: Sendable, Result: Sendable>(
    _ items: [Item], limit: Int, _ body: @escaping @Sendable (Item) async -> Result
) async -> [Result] {
    await withTaskGroup(of: (Int, Result).self) { group in
        var results: [Result?] = Array(repeating: nil, count: items.count)
        var next = 0
        func start() {
            let index = next
            let item = items[index]
            group.addTask { (index, await body(item)) }
            next += 1
        }
        while next < min(max(1, limit), items.count) { start() }
        for await (index, result) in group {
            results[index] = result
            if next < items.count { start() }
        }
        return results.compactMap { $0 }
    }
}

/// One answer per key for the life of the value: the first caller for a key starts the work,
/// every other caller for it (at the same time or later) waits for that work's result, error
/// included. `process` reads each business's connection this way once per batch, however
/// many of its conversations run at once.
public final class OncePerKey<Key: Hashable & Sendable, Value: Sendable>: Sendable {
    private let tasks = Mutex<[Key: Task<Value, any Error>]>([:])

    public init() {}

    public func value(for key: Key, _ work: @escaping @Sendable () async throws -> Value) async throws -> Value {
        let task = tasks.withLock { tasks in
            if let running = tasks[key] { return running }
            let started = Task { try await work() }
            tasks[key] = started
            return started
        }
        return try await task.value
    }
}

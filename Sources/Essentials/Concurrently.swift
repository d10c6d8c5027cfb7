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

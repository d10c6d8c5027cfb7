import MetaWebhooks

/// At most `permits` Graph calls to one account at once from this execution; the others wait,
/// first come first served. Turns of different conversations run at the same time, and many
/// of them can be one account's (a campaign): this keeps one execution from opening a flood
/// of calls on one account, whose limits Meta counts per account.
public actor AccountGate {
    public let permits: Int
    private var inUse: [String: Int] = [:]
    private var waiting: [String: [CheckedContinuation<Void, Never>]] = [:]

    public init(permits: Int = 10) {
        self.permits = max(1, permits)
    }

    /// Waits for a place for `account`.
    public func enter(_ account: String) async {
        if inUse[account, default: 0] < permits {
            inUse[account, default: 0] += 1
            return
        }
        await withCheckedContinuation { continuation in
            waiting[account, default: []].append(continuation)
        }
    }

    /// Gives the place back: to the first waiter, as it is, or to the pool.
    public func leave(_ account: String) {
        if var queue = waiting[account], !queue.isEmpty {
            let first = queue.removeFirst()
            waiting[account] = queue.isEmpty ? nil : queue
            first.resume()
            return
        }
        let count = inUse[account, default: 1] - 1
        inUse[account] = count > 0 ? count : nil
    }

    /// Calls `body` holding a place for `account`.
    public func around<T: Sendable, Failure: Error>(
        _ account: String, _ body: @Sendable () async throws(Failure) -> T
    ) async throws(Failure) -> T {
        await enter(account)
        let result: Result<T, Failure>
        do throws(Failure) {
            result = .success(try await body())
        } catch {
            result = .failure(error)
        }
        leave(account)
        return try result.get()
    }

    /// How many calls to `account` hold a place now.
    public func holding(_ account: String) -> Int { inUse[account, default: 0] }
}

import Synchronization

/// Work a handler leaves for after its answer is out: bookkeeping the caller must not wait
/// for (the time a webhook last arrived, for instance). In Lambda the loop runs it after
/// posting the response and before asking for the next invocation, so the invoker (API
/// Gateway, Meta behind it) already has its answer; locally it runs after the output is
/// written. The work is best effort: it is cut at the invocation's deadline and must not
/// throw. A handler called directly (tests) runs it with `run(before:)`.
public final class AfterResponse: Sendable {
    private let work = Mutex<[@Sendable () async -> Void]>([])

    public init() {}

    public func add(_ job: @escaping @Sendable () async -> Void) {
        work.withLock { $0.append(job) }
    }

    public var isEmpty: Bool { work.withLock { $0.isEmpty } }

    /// Runs what was added, concurrently, cancelling what is still running at `deadline`.
    public func run(before deadline: ContinuousClock.Instant) async {
        let jobs = work.withLock { jobs in
            defer { jobs.removeAll() }
            return jobs
        }
        guard !jobs.isEmpty else { return }
        await withTaskGroup(of: Bool.self) { group in
            for job in jobs {
                group.addTask {
                    await job()
                    return true
                }
            }
            group.addTask {
                // The timer: when it ends first, the jobs still running are cancelled.
                try? await Task.sleep(until: deadline, clock: .continuous)
                return false
            }
            var finished = 0
            for await isJob in group {
                guard isJob else {
                    group.cancelAll()
                    return
                }
                finished += 1
                if finished == jobs.count {
                    group.cancelAll()
                    return
                }
            }
        }
    }
}

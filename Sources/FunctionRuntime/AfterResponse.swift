import Essentials
import Synchronization

/// Work a handler leaves for after its answer is out: bookkeeping the caller must not wait
/// for (the time a webhook last arrived, for instance). In Lambda the loop runs it after
/// posting the response and before asking for the next invocation, so the invoker (API
/// Gateway, Meta behind it) already has its answer; locally it runs after the output is
/// written. The work is best effort: it is cut at the invocation's deadline or after
/// `budget`, whichever comes first (every wait inside it bounded by that through `Deadline`),
/// and must not throw. A handler called directly (tests) runs it with `run(before:)`.
public final class AfterResponse: Sendable {
    private let work = Mutex<[@Sendable () async -> Void]>([])
    /// The longest the work may take once the answer is out.
    public let budget: Duration

    public init(budget: Duration = .seconds(3)) {
        self.budget = budget
    }

    public func add(_ job: @escaping @Sendable () async -> Void) {
        work.withLock { $0.append(job) }
    }

    public var isEmpty: Bool { work.withLock { $0.isEmpty } }

    /// Runs what was added, concurrently, cancelling what is still running at `deadline` or
    /// once `budget` has passed.
    public func run(before deadline: ContinuousClock.Instant, clock: WallClock = .system) async {
        let end = min(deadline, clock.instant() + budget)
        await Deadline.within(end, clock: clock) { await run(jobsBefore: end, clock: clock) }
    }

    private func run(jobsBefore deadline: ContinuousClock.Instant, clock: WallClock) async {
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
                try? await clock.sleep(clock.remaining(until: deadline))
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

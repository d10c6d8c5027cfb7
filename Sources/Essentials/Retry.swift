/// Exponential backoff with full jitter (AWS Architecture Blog, "Exponential Backoff And
/// Jitter"): attempt n waits a random time in [0, min(cap, base * 2^n)].
public struct Backoff: Sendable {
    public let maxAttempts: Int
    public let base: Duration
    public let cap: Duration

    public init(maxAttempts: Int = 3, base: Duration = .milliseconds(50), cap: Duration = .seconds(2)) {
        self.maxAttempts = maxAttempts
        self.base = base
        self.cap = cap
    }

    /// Waits `delay` on `clock` before a retry; false when the task was cancelled meanwhile,
    /// and the caller stops retrying then (no `try? await Task.sleep` that would sleep through
    /// a cancellation and retry anyway). False at once, without waiting, when the pause would
    /// end past the current `Deadline`: a retry after it could not be waited for.
    public static func pause(_ delay: Duration, clock: WallClock = .system) async -> Bool {
        guard !Deadline.leavesLessThan(delay) else { return false }
        do {
            try await clock.sleep(delay)
            return !Task.isCancelled
        } catch {
            return false
        }
    }

    public func delay(afterAttempt attempt: Int) -> Duration {
        let ceiling = min(cap, base * (1 << min(max(attempt, 0), 20)))
        let millis = Int64(ceiling.components.seconds * 1000 + ceiling.components.attoseconds / 1_000_000_000_000_000)
        return .milliseconds(Int64.random(in: 0...max(1, millis)))
    }

    /// The product's one retry loop. Runs `attempt` (given its number, from 1) until it
    /// succeeds; after a failure it tries again only when `retrying` says the failure is worth
    /// it, attempts are left, and the jittered pause plus `room` (what the next attempt needs
    /// at least) still ends before `deadline` on `clock` (and before the task's `Deadline`).
    /// Otherwise, or when the task is cancelled during the pause, the last failure is thrown.
    /// `willRetry` hears of each retry before its pause (for a log line).
    public func run<T, Failure: Error>(
        clock: WallClock = .system, deadline: ContinuousClock.Instant? = nil, room: Duration = .zero,
        _ attempt: (Int) async throws(Failure) -> T,
        retrying: (Failure) -> Bool,
        willRetry: (Failure, Int, Duration) -> Void = { _, _, _ in }
    ) async throws(Failure) -> T {
        var number = 1
        while true {
            let failure: Failure
            do {
                return try await attempt(number)
            } catch {
                failure = error
            }
            guard number < maxAttempts, retrying(failure) else { throw failure }
            let delay = delay(afterAttempt: number)
            if let deadline, clock.remaining(until: deadline) <= delay + room { throw failure }
            willRetry(failure, number, delay)
            guard await Self.pause(delay, clock: clock) else { throw failure }
            number += 1
        }
    }
}

/// The time by which the work of the current task must be done: every wait on something
/// outside (a store, the queue, Graph, an agent, a retry's pause) is cut to it, so a stalled
/// dependency costs an invocation its remaining time at most, never more.
///
/// The runtime sets it for each invocation (its deadline less a margin for the answer) and for
/// the work left for after the answer (a budget of its own); child tasks inherit it. Code that
/// runs outside an invocation (tests calling a handler directly, tools) has none, and its own
/// timeouts apply as they are.
public enum Deadline {
    @TaskLocal public static var current: ContinuousClock.Instant?

    /// `timeout`, cut to the time left before the current deadline (zero once it has passed).
    public static func bound(_ timeout: Duration, now: ContinuousClock.Instant = .now) -> Duration {
        guard let current else { return timeout }
        return max(.zero, min(timeout, current - now))
    }

    /// Whether the current deadline leaves less than `needed` (false without a deadline).
    public static func leavesLessThan(_ needed: Duration, now: ContinuousClock.Instant = .now) -> Bool {
        guard let current else { return false }
        return current - now < needed
    }

    /// The earlier of `instant` and the current deadline.
    public static func earlier(than instant: ContinuousClock.Instant) -> ContinuousClock.Instant {
        guard let current else { return instant }
        return min(current, instant)
    }

    /// Runs `body` with the deadline at `instant`, or at the current one if that is earlier (a
    /// deadline is never extended by an inner scope).
    public static func within<T, Failure: Error>(
        _ instant: ContinuousClock.Instant, isolation: isolated (any Actor)? = #isolation,
        _ body: () async throws(Failure) -> T
    ) async throws(Failure) -> T {
        let result: Result<T, Failure> = await $current.withValue(
            earlier(than: instant),
            operation: {
                do throws(Failure) {
                    return .success(try await body())
                } catch {
                    return .failure(error)
                }
            }, isolation: isolation)
        return try result.get()
    }
}

/// The time by which the work of the current task must be done: every wait on something
/// outside (a store, the queue, Graph, an agent, a retry's pause) is cut to it, so a stalled
/// dependency costs an invocation its remaining time at most, never more.
///
/// The runtime sets it for each invocation (its deadline less a margin for the answer) and for
/// the work left for after the answer (a budget of its own); child tasks inherit it. It is an
/// instant of a clock, and is read on that clock (a test's clock in a test), so whatever
/// reads it measures the time left as the code that set it does. Code that runs outside an
/// invocation (tests calling a handler directly, tools) has none, and its own timeouts apply
/// as they are.
public enum Deadline {
    /// A deadline and the clock it is an instant of.
    public struct Scope: Sendable {
        public let instant: ContinuousClock.Instant
        public let clock: WallClock
    }

    @TaskLocal public static var scope: Scope?

    /// The current deadline, if any.
    public static var current: ContinuousClock.Instant? { scope?.instant }

    /// `timeout`, cut to the time left before the current deadline (zero once it has passed).
    public static func bound(_ timeout: Duration) -> Duration {
        guard let scope else { return timeout }
        return max(.zero, min(timeout, scope.clock.remaining(until: scope.instant)))
    }

    /// Whether the current deadline leaves less than `needed` (false without a deadline).
    public static func leavesLessThan(_ needed: Duration) -> Bool {
        guard let scope else { return false }
        return scope.clock.remaining(until: scope.instant) < needed
    }

    /// The earlier of `instant` and the current deadline.
    public static func earlier(than instant: ContinuousClock.Instant) -> ContinuousClock.Instant {
        guard let current else { return instant }
        return min(current, instant)
    }

    /// Runs `body` with the deadline at `instant` of `clock`, or at the current one if that is
    /// earlier (a deadline is never extended by an inner scope).
    public static func within<T, Failure: Error>(
        _ instant: ContinuousClock.Instant, clock: WallClock = .system, isolation: isolated (any Actor)? = #isolation,
        _ body: () async throws(Failure) -> T
    ) async throws(Failure) -> T {
        let result: Result<T, Failure> = await $scope.withValue(
            Scope(instant: earlier(than: instant), clock: scope?.clock ?? clock),
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

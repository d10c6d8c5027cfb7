#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The product's one clock, handed to every handler, store and client that reads the time
/// (through `Services` and the invocation's context): wall time for what is stored and
/// compared across executions (windows, leases, pauses, expiry), and a monotonic instant with
/// its sleep for what is measured within one (budgets, deadlines, retry pauses). Nothing else
/// reads the system's clocks: a test hands in a clock it advances (`TestClock`), so no rule
/// about time is tested by waiting on real time.
public struct WallClock: Sendable {
    public let epochSeconds: @Sendable () -> Int64
    /// Monotonic time: a clock step cannot stretch or cut a budget measured with it.
    public let instant: @Sendable () -> ContinuousClock.Instant
    /// Waits `duration` on this clock; throws when the task is cancelled.
    public let sleep: @Sendable (Duration) async throws -> Void

    public init(
        epochSeconds: @escaping @Sendable () -> Int64 = WallClock.epochSeconds,
        instant: @escaping @Sendable () -> ContinuousClock.Instant = { ContinuousClock.now },
        sleep: @escaping @Sendable (Duration) async throws -> Void = { try await Task.sleep(for: $0) }
    ) {
        self.epochSeconds = epochSeconds
        self.instant = instant
        self.sleep = sleep
    }

    public static let system = WallClock()

    /// The time left before `deadline` on this clock (negative once it has passed).
    public func remaining(until deadline: ContinuousClock.Instant) -> Duration {
        deadline - instant()
    }

    @Sendable public static func epochSeconds() -> Int64 {
        epochMilliseconds() / 1000
    }

    /// The one reading of the system's real-time clock.
    @Sendable public static func epochMilliseconds() -> Int64 {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        return Int64(spec.tv_sec) * 1000 + Int64(spec.tv_nsec / 1_000_000)
    }
}

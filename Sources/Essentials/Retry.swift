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

    /// Waits `delay` before a retry; false when the task was cancelled meanwhile, and the
    /// caller stops retrying then. The one retry pause of the product (no `try? await
    /// Task.sleep` that would sleep through a cancellation and retry anyway). False at once,
    /// without waiting, when the pause would end past the current `Deadline`: a retry after it
    /// could not be waited for.
    public static func pause(_ delay: Duration) async -> Bool {
        guard !Deadline.leavesLessThan(delay) else { return false }
        do {
            try await Task.sleep(for: delay)
            return !Task.isCancelled
        } catch {
            return false
        }
    }

    public func delay(afterAttempt attempt: Int) -> Duration {
        let ceiling = min(cap, base * (1 << min(attempt, 20)))
        let millis = Int64(ceiling.components.seconds * 1000 + ceiling.components.attoseconds / 1_000_000_000_000_000)
        return .milliseconds(Int64.random(in: 0...max(1, millis)))
    }
}

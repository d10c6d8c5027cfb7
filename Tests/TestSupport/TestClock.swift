import Essentials
import Synchronization

/// The one clock of a test's world, handed to every store, ledger, client and handler the test
/// builds, and to the invocation contexts it makes. It starts at the real time of its making,
/// so a child process (which reads the real clock) and the world agree, and from then on
/// moves only when the test advances it, or by what the code under test sleeps on it: a
/// rule about time (a window, a lease, a pause, a schedule, a budget) is tested by moving this
/// clock, never by waiting, and the work itself takes no time on it, so a loaded machine
/// cannot eat a budget. No test depends on the day it runs (CI runs the suite again a year
/// ahead). Fixtures take their timestamps from it, never from a literal epoch.
public final class TestClock: Sendable {
    private let milliseconds: Mutex<Int64>
    /// Monotonic time moved since the clock was made: by `advance` and by sleeps.
    private let moved: Mutex<Duration>
    private let origin: ContinuousClock.Instant

    public init(epochMilliseconds: Int64 = WallClock.epochMilliseconds()) {
        milliseconds = Mutex(epochMilliseconds)
        moved = Mutex(.zero)
        origin = ContinuousClock.now
    }

    /// Epoch seconds.
    public var now: Int64 { nowMilliseconds / 1000 }
    public var nowMilliseconds: Int64 { milliseconds.withLock { $0 } }
    /// The monotonic reading.
    public var instant: ContinuousClock.Instant { origin + moved.withLock { $0 } }

    /// The clock as the product takes it. A sleep on it waits for real (another task may
    /// have work to finish meanwhile) and moves the monotonic reading by as much; the wall
    /// time stays where the test put it.
    public var clock: WallClock {
        WallClock(
            epochSeconds: { [self] in now }, instant: { [self] in instant },
            sleep: { [self] duration in
                try await Task.sleep(for: duration)
                moved.withLock { $0 += duration }
            })
    }
    public var epochSeconds: @Sendable () -> Int64 { { [self] in now } }
    public var epochMilliseconds: @Sendable () -> Int64 { { [self] in nowMilliseconds } }

    public func advance(_ seconds: Int64) { advance(milliseconds: seconds * 1000) }
    public func advance(milliseconds delta: Int64) {
        milliseconds.withLock { $0 += delta }
        moved.withLock { $0 += .milliseconds(delta) }
    }
}

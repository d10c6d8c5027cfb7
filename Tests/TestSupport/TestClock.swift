import Essentials
import Synchronization

/// The one wall clock of a test's world, handed to every store, ledger and handler the test
/// builds. It starts at the real time of its making, so a child process (which reads the real
/// clock) and the world agree, and from then on moves only when the test advances it: a rule
/// about time (a window, a lease, a pause, a schedule) is tested by moving this clock, never by
/// waiting, and no test depends on the day it runs (CI runs the suite again a year ahead).
/// Fixtures take their timestamps from it, never from a literal epoch.
public final class TestClock: Sendable {
    private let milliseconds: Mutex<Int64>

    public init(epochMilliseconds: Int64 = WallClock.epochMilliseconds()) {
        milliseconds = Mutex(epochMilliseconds)
    }

    /// Epoch seconds.
    public var now: Int64 { nowMilliseconds / 1000 }
    public var nowMilliseconds: Int64 { milliseconds.withLock { $0 } }

    /// The clock as the product takes it.
    public var clock: WallClock { WallClock { [self] in now } }
    public var epochSeconds: @Sendable () -> Int64 { { [self] in now } }
    public var epochMilliseconds: @Sendable () -> Int64 { { [self] in nowMilliseconds } }

    public func advance(_ seconds: Int64) { milliseconds.withLock { $0 += seconds * 1000 } }
    public func advance(milliseconds delta: Int64) { milliseconds.withLock { $0 += delta } }
}

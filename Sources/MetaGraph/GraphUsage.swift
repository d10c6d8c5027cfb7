import Essentials
import MetaWebhooks
import SafeJSON
import Synchronization

/// What Meta says about the caller's rate limits in an answer's headers (Graph API "Rate
/// Limits"): `X-App-Usage` and `X-Page-Usage` (`{"call_count":28,"total_cputime":25,"total_time":25}`,
/// each a percentage of the limit) and `X-Business-Use-Case-Usage`
/// (`{"<object id>":[{"type":"messenger","call_count":..,"total_cputime":..,"total_time":..,
/// "estimated_time_to_regain_access":<minutes>}]}`). A header that does not parse is ignored:
/// it is advice, never a reason to fail a call.
public struct GraphUsage: Sendable, Equatable {
    /// The highest percentage any header reports (0 when none).
    public var highestPercent: Int = 0
    /// Meta's estimate, in minutes, of when a throttled caller may call again (0: none given).
    public var minutesToRegainAccess: Int = 0

    public init(highestPercent: Int = 0, minutesToRegainAccess: Int = 0) {
        self.highestPercent = highestPercent
        self.minutesToRegainAccess = minutesToRegainAccess
    }

    /// The usage an answer reports; nil when it carries none of the headers.
    public static func from(_ header: (String) -> String?) -> GraphUsage? {
        var usage = GraphUsage()
        var found = false
        for name in ["X-App-Usage", "X-Page-Usage"] {
            guard let node = parse(header(name)) else { continue }
            found = true
            usage.add(node)
        }
        if let node = parse(header("X-Business-Use-Case-Usage")), case .object(let objects) = node {
            found = true
            for entry in objects {
                for usageOfType in entry.value.array ?? [] { usage.add(usageOfType) }
            }
        }
        return found ? usage : nil
    }

    private mutating func add(_ node: JSONNode) {
        for field in ["call_count", "total_cputime", "total_time"] {
            highestPercent = max(highestPercent, Self.bounded(node[field]))
        }
        minutesToRegainAccess = max(minutesToRegainAccess, Self.bounded(node["estimated_time_to_regain_access"]))
    }

    /// A header value of at most 4 KB, read under tight limits.
    private static func parse(_ value: String?) -> JSONNode? {
        guard let value, value.utf8.count <= 4096 else { return nil }
        return try? JSONNode.parse(Array(value.utf8), limits: JSONLimits(maxBytes: 4096, maxDepth: 4))
    }

    /// A whole number from 0 to 10,000 (a day is 1,440 minutes; a percentage may pass 100);
    /// anything else counts as 0.
    private static func bounded(_ node: JSONNode?) -> Int {
        guard let value = node?.exactInt64 ?? node?.finiteDouble.map({ Int64($0.rounded(.up).clamped(to: -1...10_000)) }) else { return 0 }
        return Int(value.clamped(to: 0...10_000))
    }
}

extension Comparable {
    fileprivate func clamped(to range: ClosedRange<Self>) -> Self { min(max(self, range.lowerBound), range.upperBound) }
}

extension GraphError {
    /// Meta's rate-limit codes: 4 (app), 17 (user), 32 (Page), 613 (custom), the Business Use
    /// Case limits 80000 to 80014 (80001 Pages, 80002 Instagram, 80006 Messenger, 80007
    /// WhatsApp), and WhatsApp's 130429 (throughput) and 131056 (pair rate).
    public var isThrottled: Bool {
        guard kind == .graph, let code else { return false }
        return [4, 17, 32, 613, 130429, 131056].contains(code) || (80000...80014).contains(code)
    }

    /// How long to leave the account alone: Meta's estimate when it gave one, else a minute.
    public var secondsToRegainAccess: Int {
        let minutes = usage?.minutesToRegainAccess ?? 0
        return minutes > 0 ? min(minutes, 1440) * 60 : 60
    }
}

/// The accounts (Pages, Instagram accounts, WhatsApp numbers) Meta throttles, or nearly:
/// nothing is sent for such an account, and no agent is asked, until the time Meta gave.
/// Each process learns it from its own answers (a Lambda execution environment keeps it
/// between invocations).
public final class AccountThrottle: Sendable {
    /// At or above this percentage of any limit, an account is left alone before Meta
    /// throttles it (its answers keep coming back at this level until usage falls).
    public static let nearLimitPercent = 95
    /// How long an account near its limit is left alone when Meta gives no estimate.
    public static let nearLimitPauseSeconds = 60

    private let pausedUntil = Mutex<[String: Int64]>([:])
    /// Pauses this execution learned and has not yet written where the others see them.
    private let unshared = Mutex<[String: Int64]>([:])
    private let clock: WallClock

    public init(clock: WallClock = WallClock()) { self.clock = clock }

    /// Seconds until `account` may be sent to again; nil when it may be now.
    public func remaining(_ account: String) -> Int? {
        let now = clock.epochSeconds()
        return pausedUntil.withLock { paused in
            guard let until = paused[account] else { return nil }
            if until <= now {
                paused[account] = nil
                return nil
            }
            return Int(until - now)
        }
    }

    /// Leaves `account` alone for `seconds` (a later pause never shortens an earlier one).
    public func pause(_ account: String, seconds: Int) {
        let until = clock.epochSeconds() + Int64(max(1, seconds))
        pausedUntil.withLock { $0[account] = max($0[account] ?? 0, until) }
        unshared.withLock { $0[account] = max($0[account] ?? 0, until) }
    }

    /// A pause another execution wrote (epoch seconds it ends): kept, not shared again.
    public func seed(_ account: String, until: Int64) {
        guard until > clock.epochSeconds() else { return }
        pausedUntil.withLock { $0[account] = max($0[account] ?? 0, until) }
    }

    /// The pauses learned here since the last call, to be written for the other executions.
    public func takeUnshared() -> [String: Int64] {
        unshared.withLock { pauses in
            defer { pauses.removeAll() }
            return pauses
        }
    }

    public var now: Int64 { clock.epochSeconds() }

    /// Pauses `account` when an answer says it is near its limit; the seconds paused, if so.
    @discardableResult
    public func observe(_ usage: GraphUsage, account: String) -> Int? {
        guard usage.highestPercent >= Self.nearLimitPercent else { return nil }
        let seconds = usage.minutesToRegainAccess > 0 ? min(usage.minutesToRegainAccess, 1440) * 60 : Self.nearLimitPauseSeconds
        pause(account, seconds: seconds)
        return seconds
    }
}

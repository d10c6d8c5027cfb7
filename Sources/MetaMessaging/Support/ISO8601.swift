#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// ISO 8601 timestamps (UTC, seconds) without Foundation's formatters.
public enum ISO8601 {
    @Sendable public static func now() -> String { format(epochSeconds: WallClock.epochSeconds()) }

    public static func format(epochSeconds: Int64) -> String {
        var time = time_t(epochSeconds)
        var parts = tm()
        gmtime_r(&time, &parts)
        func pad(_ value: Int32, _ width: Int) -> String {
            let text = String(value)
            return String(repeating: "0", count: max(0, width - text.count)) + text
        }
        return "\(pad(parts.tm_year + 1900, 4))-\(pad(parts.tm_mon + 1, 2))-\(pad(parts.tm_mday, 2))T"
            + "\(pad(parts.tm_hour, 2)):\(pad(parts.tm_min, 2)):\(pad(parts.tm_sec, 2))Z"
    }
}

/// Wall-clock time, injected into whatever needs it so tests can set it.
public struct WallClock: Sendable {
    public let epochSeconds: @Sendable () -> Int64

    public init(epochSeconds: @escaping @Sendable () -> Int64 = WallClock.epochSeconds) {
        self.epochSeconds = epochSeconds
    }

    @Sendable public static func epochSeconds() -> Int64 {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        return Int64(spec.tv_sec)
    }

    public static let system = WallClock()
}

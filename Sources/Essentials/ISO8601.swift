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

    /// With milliseconds: `2026-11-27T03:00:00.123Z`.
    public static func format(epochMilliseconds: Int64) -> String {
        let seconds = epochMilliseconds >= 0 ? epochMilliseconds / 1000 : (epochMilliseconds - 999) / 1000
        let millis = epochMilliseconds - seconds * 1000
        let text = format(epochSeconds: seconds)
        let fraction = String(millis)
        return String(text.dropLast()) + "." + String(repeating: "0", count: max(0, 3 - fraction.count)) + fraction + "Z"
    }

    public static func format(epochSeconds: Int64) -> String {
        let utc = UTCFields(epochSeconds: epochSeconds)
        return "\(utc.year)-\(utc.month)-\(utc.day)T\(utc.hour):\(utc.minute):\(utc.second)Z"
    }
}

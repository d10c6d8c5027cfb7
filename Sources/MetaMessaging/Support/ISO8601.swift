import HTTPTransport

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
        let utc = UTCFields(epochSeconds: epochSeconds)
        return "\(utc.year)-\(utc.month)-\(utc.day)T\(utc.hour):\(utc.minute):\(utc.second)Z"
    }
}

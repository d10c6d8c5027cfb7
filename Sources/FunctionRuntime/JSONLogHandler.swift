import Essentials
import Logging
import SafeJSON

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// One JSON object per line on stderr, the shape CloudWatch Logs' JSON format expects:
/// `{"timestamp","level","message","logger", ...metadata}`.
public struct JSONLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level
    private let label: String
    private let redaction: Redaction

    public init(label: String, level: Logger.Level, redaction: Redaction = Redaction()) {
        self.label = label
        self.logLevel = level
        self.redaction = redaction
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var fields: [String: JSONNode] = [
            "timestamp": .string(Self.timestamp()),
            "level": .string(event.level.rawValue.uppercased()),
            "message": .string(redaction.scrub(event.message.description)),
            "logger": .string(label),
        ]
        for (key, value) in metadata.merging(event.metadata ?? [:], uniquingKeysWith: { $1 }) where fields[key] == nil {
            fields[key] = Self.node(value, redaction: redaction)
        }
        Output.write(JSONNode.dictionary(fields).encoded() + [UInt8(ascii: "\n")], to: STDERR_FILENO)
    }

    /// A metadata value as the product's JSON value, every string through the redaction.
    static func node(_ value: Logger.MetadataValue, redaction: Redaction) -> JSONNode {
        switch value {
        case .string(let text): .string(redaction.scrub(text))
        case .stringConvertible(let convertible): .string(redaction.scrub(convertible.description))
        case .array(let values): .array(values.map { node($0, redaction: redaction) })
        case .dictionary(let values): .dictionary(values.mapValues { node($0, redaction: redaction) })
        }
    }

    /// ISO 8601 in UTC with milliseconds, without Foundation's date formatting.
    package static func timestamp() -> String {
        let now = WallClock.epochMilliseconds()
        let utc = UTCFields(epochSeconds: now / 1000)
        let milliseconds = String(now % 1000 + 1000).dropFirst()  // three digits, zero-padded
        return "\(utc.year)-\(utc.month)-\(utc.day)T\(utc.hour):\(utc.minute):\(utc.second).\(milliseconds)Z"
    }

    /// The logging system for a function: JSON lines on stderr at `LOG_LEVEL`.
    public static func bootstrap(environment: Environment) throws(ConfigurationError) {
        let name = try environment.choice(
            "LOG_LEVEL", of: ["trace", "debug", "info", "notice", "warning", "error", "critical"], default: "info")
        let level = Logger.Level(rawValue: name) ?? .info
        let redaction = Redaction(environment: environment)
        LoggingSystem.bootstrap { label in JSONLogHandler(label: label, level: level, redaction: redaction) }
    }
}

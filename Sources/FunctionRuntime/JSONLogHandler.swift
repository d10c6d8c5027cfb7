import Essentials
import Logging

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
        var fields: [String: JSONValue] = [
            "timestamp": .string(Self.timestamp()),
            "level": .string(event.level.rawValue.uppercased()),
            "message": .string(redaction.scrub(event.message.description)),
            "logger": .string(label),
        ]
        for (key, value) in metadata.merging(event.metadata ?? [:], uniquingKeysWith: { $1 }) where fields[key] == nil {
            fields[key] = JSONValue(value, redaction: redaction)
        }
        var line = JSONWriter()
        line.value(.object(fields))
        line.raw("\n")
        Output.write(line.bytes, to: STDERR_FILENO)
    }

    /// ISO 8601 in UTC with milliseconds, without Foundation's date formatting.
    static func timestamp() -> String {
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

enum JSONValue {
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    init(_ value: Logger.MetadataValue, redaction: Redaction) {
        switch value {
        case .string(let text): self = .string(redaction.scrub(text))
        case .stringConvertible(let convertible): self = .string(redaction.scrub(convertible.description))
        case .array(let values): self = .array(values.map { JSONValue($0, redaction: redaction) })
        case .dictionary(let values): self = .object(values.mapValues { JSONValue($0, redaction: redaction) })
        }
    }
}

extension JSONWriter {
    /// A log value; object keys sorted.
    mutating func value(_ value: JSONValue) {
        switch value {
        case .string(let text):
            string(text)
        case .array(let values):
            raw("[")
            for (offset, element) in values.enumerated() {
                if offset > 0 { raw(",") }
                self.value(element)
            }
            raw("]")
        case .object(let members):
            raw("{")
            for (offset, key) in members.keys.sorted().enumerated() {
                if offset > 0 { raw(",") }
                string(key)
                raw(":")
                self.value(members[key] ?? .string(""))
            }
            raw("}")
        }
    }
}

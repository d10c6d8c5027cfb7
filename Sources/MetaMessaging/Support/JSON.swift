import SafeJSON

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// A JSON document read leniently, for payloads from outside whose shape we check field by
/// field: a wrong type in one event makes that event invalid, not the whole delivery.
public enum JSON: Sendable, Equatable, Codable, ExpressibleByStringLiteral, ExpressibleByDictionaryLiteral, ExpressibleByArrayLiteral,
    ExpressibleByBooleanLiteral
{
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSON])
    case object([String: JSON])

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode(Double.self) {
            self = .number(value)
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode([JSON].self) {
            self = .array(value)
        } else {
            self = .object(try container.decode([String: JSON].self))
        }
    }

    public init(stringLiteral value: String) { self = .string(value) }
    public init(dictionaryLiteral elements: (String, JSON)...) {
        self = .object(Dictionary(elements, uniquingKeysWith: { $1 }))
    }
    public init(arrayLiteral elements: JSON...) { self = .array(elements) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .null: try container.encodeNil()
        case .bool(let value): try container.encode(value)
        case .number(let value):
            if value.rounded() == value, abs(value) < 9.0e15 { try container.encode(Int64(value)) } else { try container.encode(value) }
        case .string(let value): try container.encode(value)
        case .array(let value): try container.encode(value)
        case .object(let value): try container.encode(value)
        }
    }

    /// Compact JSON with sorted keys and unescaped slashes.
    public func encoded() -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return (try? encoder.encode(self)).map(Array.init) ?? Array("null".utf8)
    }

    /// The guarded entry point for every untyped document from outside: read by the strict
    /// reader under `limits` (size, depth, repeated names), numbers finite.
    public static func parse(_ bytes: [UInt8], limits: JSONLimits = .standard) throws(JSONReadError) -> JSON {
        try JSON(node: JSONReader.read(bytes, limits: limits))
    }

    public init(node: JSONNode) throws(JSONReadError) {
        switch node {
        case .null: self = .null
        case .bool(let value): self = .bool(value)
        case .string(let value): self = .string(value)
        case .number:
            guard let value = node.finiteDouble else { throw JSONReadError(reason: "number out of range", offset: 0) }
            self = .number(value)
        case .array(let elements):
            var values: [JSON] = []
            values.reserveCapacity(elements.count)
            for element in elements { values.append(try JSON(node: element)) }
            self = .array(values)
        case .object(let members):
            var values: [String: JSON] = [:]
            values.reserveCapacity(members.count)
            for member in members { values[member.key] = try JSON(node: member.value) }
            self = .object(values)
        }
    }

    public subscript(key: String) -> JSON? {
        if case .object(let object) = self { object[key] } else { nil }
    }

    public var string: String? { if case .string(let value) = self { value } else { nil } }
    public var bool: Bool? { if case .bool(let value) = self { value } else { nil } }
    public var array: [JSON]? { if case .array(let value) = self { value } else { nil } }
    public var object: [String: JSON]? { if case .object(let value) = self { value } else { nil } }

    /// A number, or a string holding one (Meta sends WhatsApp timestamps as strings).
    public var int64: Int64? {
        switch self {
        case .number(let value) where value.rounded() == value && abs(value) < 9.0e15: Int64(value)
        case .string(let value): Int64(value)
        default: nil
        }
    }

    /// The largest instant accepted from outside: 9999-12-31T23:59:59Z, in seconds.
    public static let maxEpochSeconds: Int64 = 253_402_300_799

    /// A time in epoch milliseconds (Messenger, Instagram), if it is a whole number from 0 to
    /// the year 9999; anything else (negative, fractional, overflowing) is nil.
    public var epochMilliseconds: Int64? {
        guard let value = int64, value >= 0, value <= Self.maxEpochSeconds * 1000 else { return nil }
        return value
    }

    /// A time in epoch seconds (WhatsApp sends them as strings) turned into milliseconds, with
    /// the same range: `"9223372036854776"` is nil, never an overflow.
    public var epochSecondsAsMilliseconds: Int64? {
        guard let value = int64, value >= 0, value <= Self.maxEpochSeconds else { return nil }
        return value * 1000
    }

    /// An identifier: Meta's ids are strings, but accept a whole number too.
    public var id: String? {
        switch self {
        case .string(let value) where !value.isEmpty: value
        case .number: int64.map(String.init)
        default: nil
        }
    }
}

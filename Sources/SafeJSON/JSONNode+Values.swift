/// `JSONNode` is the product's one JSON value model: what the reader builds from outside, what
/// the handlers read field by field (a wrong type in one event makes that event invalid, not
/// the whole delivery), and what they build to send. Numbers keep their text, so converting
/// one is always a range-checked choice of the caller.
extension JSONNode: ExpressibleByStringLiteral, ExpressibleByDictionaryLiteral, ExpressibleByArrayLiteral,
    ExpressibleByBooleanLiteral, ExpressibleByIntegerLiteral
{
    public init(stringLiteral value: String) { self = .string(value) }
    public init(dictionaryLiteral elements: (String, JSONNode)...) { self = .object(elements.map { (key: $0.0, value: $0.1) }) }
    public init(arrayLiteral elements: JSONNode...) { self = .array(elements) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(integerLiteral value: Int64) { self = .number(String(value)) }

    /// An object from a dictionary (members written in key order).
    public static func dictionary(_ members: [String: JSONNode]) -> JSONNode {
        .object(members.sorted { $0.key < $1.key }.map { (key: $0.key, value: $0.value) })
    }

    /// A whole number.
    public static func integer(_ value: some FixedWidthInteger) -> JSONNode { .number(String(value)) }

    /// The guarded entry point for an untyped document from outside (see `JSONReader`).
    public static func parse(_ bytes: [UInt8], limits: JSONLimits = .standard) throws(JSONReadError) -> JSONNode {
        try JSONReader.read(bytes, limits: limits)
    }

    public var string: String? { if case .string(let value) = self { value } else { nil } }
    public var bool: Bool? { if case .bool(let value) = self { value } else { nil } }
    public var array: [JSONNode]? { if case .array(let value) = self { value } else { nil } }

    /// An object's members by name (names are unique: the reader refuses a repeated one).
    public var object: [String: JSONNode]? {
        guard case .object(let members) = self else { return nil }
        var values: [String: JSONNode] = [:]
        values.reserveCapacity(members.count)
        for member in members { values[member.key] = member.value }
        return values
    }

    /// A whole number, or a string holding one (Meta sends WhatsApp timestamps as strings);
    /// nil when it is not one or does not fit.
    public var int64: Int64? {
        switch self {
        case .number: exactInt64
        case .string(let value): Int64(value)
        default: nil
        }
    }

    /// An identifier: Meta's ids are strings, but a whole number is accepted too.
    public var id: String? {
        switch self {
        case .string(let value) where !value.isEmpty: value
        case .number: exactInt64.map(String.init)
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

    /// Compact JSON, object members in key order, slashes and non-ASCII text as they are.
    public func encoded() -> [UInt8] {
        var out: [UInt8] = []
        Self.write(self, into: &out)
        return out
    }

    private static func write(_ node: JSONNode, into out: inout [UInt8]) {
        switch node {
        case .null: out += "null".utf8
        case .bool(let flag): out += (flag ? "true" : "false").utf8
        case .number(let text): out += text.utf8
        case .string(let text): writeString(text, into: &out)
        case .array(let elements):
            out.append(UInt8(ascii: "["))
            for (offset, element) in elements.enumerated() {
                if offset > 0 { out.append(UInt8(ascii: ",")) }
                write(element, into: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let members):
            out.append(UInt8(ascii: "{"))
            // Members built by `dictionary` are sorted already; others are sorted here.
            let ordered = zip(members, members.dropFirst()).allSatisfy { $0.key < $1.key } ? members : members.sorted { $0.key < $1.key }
            for (offset, member) in ordered.enumerated() {
                if offset > 0 { out.append(UInt8(ascii: ",")) }
                writeString(member.key, into: &out)
                out.append(UInt8(ascii: ":"))
                write(member.value, into: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    /// RFC 8259 section 7: quotes, backslashes and control characters escaped.
    public static func writeString(_ text: String, into out: inout [UInt8]) {
        let hex = Array("0123456789abcdef".utf8)
        out.append(UInt8(ascii: "\""))
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\""): out += #"\""#.utf8
            case UInt8(ascii: "\\"): out += #"\\"#.utf8
            case 0x0A: out += #"\n"#.utf8
            case 0x0D: out += #"\r"#.utf8
            case 0x09: out += #"\t"#.utf8
            case 0..<0x20:
                out += #"\u00"#.utf8
                out.append(hex[Int(byte >> 4)])
                out.append(hex[Int(byte & 0x0F)])
            default: out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}

import Essentials

/// A JSON value as `JSONReader` reads it: objects keep their members in document order (a
/// member name appears once: the reader refuses a repeated one), and numbers keep their text,
/// so a caller converts them with its own range check.
public enum JSONNode: Sendable, Equatable {
    case null
    case bool(Bool)
    case number(String)
    case string(String)
    case array([JSONNode])
    case object([(key: String, value: JSONNode)])

    public static func == (lhs: JSONNode, rhs: JSONNode) -> Bool {
        switch (lhs, rhs) {
        case (.null, .null): return true
        case (.bool(let a), .bool(let b)): return a == b
        case (.number(let a), .number(let b)): return a == b
        case (.string(let a), .string(let b)): return a == b
        case (.array(let a), .array(let b)): return a == b
        case (.object(let a), .object(let b)): return a.elementsEqual(b) { $0.key == $1.key && $0.value == $1.value }
        default: return false
        }
    }

    /// An object's member; nil if absent or not an object.
    public subscript(key: String) -> JSONNode? {
        guard case .object(let members) = self else { return nil }
        return members.first { $0.key == key }?.value
    }

    public var kind: String {
        switch self {
        case .null: "null"
        case .bool: "a boolean"
        case .number: "a number"
        case .string: "a string"
        case .array: "an array"
        case .object: "an object"
        }
    }
}

/// Why some bytes are not one JSON document; the offset says where, never what.
public struct JSONReadError: Error, Sendable, Equatable, CustomStringConvertible {
    public let reason: String
    public let offset: Int

    public init(reason: String, offset: Int) {
        self.reason = reason
        self.offset = offset
    }

    public var description: String { "\(reason) at byte \(offset)" }
}

/// How large and how deep a document the reader accepts. Every JSON document the product
/// reads from outside (events, queue bodies, Graph, AWS, agent and Bedrock answers, table
/// files) is read under limits, before any value is built from it: Foundation's
/// `JSONDecoder` traps (the process dies by SIGILL) on a document nested about 512 deep, so
/// no document reaches a decoder that has not passed these checks.
public struct JSONLimits: Sendable, Equatable {
    public var maxBytes: Int
    public var maxDepth: Int

    public init(maxBytes: Int, maxDepth: Int = JSONLimits.standard.maxDepth) {
        self.maxBytes = maxBytes
        self.maxDepth = maxDepth
    }

    /// 8 MiB (above API Gateway's 6 MB and Lambda's payloads) and 128 levels (Meta's webhooks
    /// are under 10 deep).
    public static let standard = JSONLimits(maxBytes: 8 * 1024 * 1024, maxDepth: 128)
}

/// A strict reader of one JSON document (RFC 8259): UTF-8 only (a leading byte order mark is
/// skipped), no trailing commas, no comments, nothing after the value, a size and a nesting
/// limit, and no member name twice in one object (RFC 8259 leaves a repeated name's meaning
/// open: one parser keeps the first, another the last, so a document naming a tenant twice
/// could mean two things; refusing it is the one rule everywhere).
/// The runtime reads every API Gateway event with it: Foundation's `JSONDecoder` spent most of
/// a warm invocation's CPU time in Codable's generic machinery for a 1 KB event, and this
/// reader does the same job in a small fraction of it (see `scripts/bench verify`).
public struct JSONReader {
    public static var maxDepth: Int { JSONLimits.standard.maxDepth }

    public static func read(_ bytes: [UInt8], limits: JSONLimits = .standard) throws(JSONReadError) -> JSONNode {
        guard bytes.count <= limits.maxBytes else {
            throw JSONReadError(reason: "JSON document larger than \(limits.maxBytes) bytes", offset: 0)
        }
        return try bytes.withUnsafeBufferPointer { (buffer) throws(JSONReadError) -> JSONNode in
            var reader = JSONReader(buffer, maxDepth: limits.maxDepth)
            // A UTF-8 byte order mark, as some editors save event files, is ignored (RFC 8259 §8.1).
            if buffer.starts(with: [0xEF, 0xBB, 0xBF]) { reader.index = 3 }
            reader.skipWhitespace()
            let value = try reader.readValue(depth: 0)
            reader.skipWhitespace()
            guard reader.index == buffer.count else { throw reader.error("unexpected data after the JSON value") }
            return value
        }
    }

    private let bytes: UnsafeBufferPointer<UInt8>
    private let maxDepth: Int
    private var index = 0

    private init(_ bytes: UnsafeBufferPointer<UInt8>, maxDepth: Int) {
        self.bytes = bytes
        self.maxDepth = maxDepth
    }

    private func error(_ reason: String) -> JSONReadError {
        JSONReadError(reason: reason, offset: index)
    }

    private mutating func skipWhitespace() {
        while index < bytes.count {
            switch bytes[index] {
            case 0x20, 0x09, 0x0A, 0x0D: index += 1
            default: return
            }
        }
    }

    private mutating func readValue(depth: Int) throws(JSONReadError) -> JSONNode {
        guard index < bytes.count else { throw error("unexpected end of the JSON document") }
        switch bytes[index] {
        case UInt8(ascii: "{"): return try readObject(depth: depth + 1)
        case UInt8(ascii: "["): return try readArray(depth: depth + 1)
        case UInt8(ascii: "\""): return .string(try readString())
        case UInt8(ascii: "t"): try readLiteral("true"); return .bool(true)
        case UInt8(ascii: "f"): try readLiteral("false"); return .bool(false)
        case UInt8(ascii: "n"): try readLiteral("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number(try readNumber())
        default: throw error("unexpected character")
        }
    }

    private mutating func readLiteral(_ literal: StaticString) throws(JSONReadError) {
        let count = literal.utf8CodeUnitCount
        guard bytes.count - index >= count,
            UnsafeBufferPointer(start: literal.utf8Start, count: count).elementsEqual(bytes[index..<(index + count)])
        else { throw error("invalid literal") }
        index += count
    }

    private mutating func readObject(depth: Int) throws(JSONReadError) -> JSONNode {
        guard depth <= maxDepth else { throw error("JSON nested too deeply") }
        index += 1
        var members: [(key: String, value: JSONNode)] = []
        // Small objects (Meta's, AWS's) are checked for a repeated name by a scan; a large one
        // by a set, so a hostile object of many members costs linear time.
        var seen: Set<String>? = nil
        skipWhitespace()
        if index < bytes.count, bytes[index] == UInt8(ascii: "}") {
            index += 1
            return .object(members)
        }
        while true {
            guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { throw error("expected a member name") }
            let keyOffset = index
            let key = try readString()
            if seen == nil, members.count >= 48 { seen = Set(members.map(\.key)) }
            if seen != nil {
                guard seen?.insert(key).inserted == true else { throw JSONReadError(reason: "repeated member name", offset: keyOffset) }
            } else if members.contains(where: { $0.key == key }) {
                throw JSONReadError(reason: "repeated member name", offset: keyOffset)
            }
            skipWhitespace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else { throw error("expected ':'") }
            index += 1
            skipWhitespace()
            members.append((key: key, value: try readValue(depth: depth)))
            skipWhitespace()
            guard index < bytes.count else { throw error("unexpected end of the JSON document") }
            if bytes[index] == UInt8(ascii: "}") {
                index += 1
                return .object(members)
            }
            guard bytes[index] == UInt8(ascii: ",") else { throw error("expected ',' or '}'") }
            index += 1
            skipWhitespace()
        }
    }

    private mutating func readArray(depth: Int) throws(JSONReadError) -> JSONNode {
        guard depth <= maxDepth else { throw error("JSON nested too deeply") }
        index += 1
        var elements: [JSONNode] = []
        skipWhitespace()
        if index < bytes.count, bytes[index] == UInt8(ascii: "]") {
            index += 1
            return .array(elements)
        }
        while true {
            elements.append(try readValue(depth: depth))
            skipWhitespace()
            guard index < bytes.count else { throw error("unexpected end of the JSON document") }
            if bytes[index] == UInt8(ascii: "]") {
                index += 1
                return .array(elements)
            }
            guard bytes[index] == UInt8(ascii: ",") else { throw error("expected ',' or ']'") }
            index += 1
            skipWhitespace()
        }
    }

    private mutating func readNumber() throws(JSONReadError) -> String {
        let start = index
        func digits(_ index: inout Int, _ bytes: UnsafeBufferPointer<UInt8>) -> Int {
            let first = index
            while index < bytes.count, bytes[index] &- UInt8(ascii: "0") < 10 { index += 1 }
            return index - first
        }
        if bytes[index] == UInt8(ascii: "-") { index += 1 }
        if index < bytes.count, bytes[index] == UInt8(ascii: "0") {
            index += 1
        } else if digits(&index, bytes) == 0 {
            throw error("invalid number")
        }
        if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
            index += 1
            guard digits(&index, bytes) > 0 else { throw error("invalid number") }
        }
        if index < bytes.count, bytes[index] | 0x20 == UInt8(ascii: "e") {
            index += 1
            if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") { index += 1 }
            guard digits(&index, bytes) > 0 else { throw error("invalid number") }
        }
        return String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
    }

    /// A string value or member name; `index` is on the opening quote.
    private mutating func readString() throws(JSONReadError) -> String {
        index += 1
        let start = index
        var ascii = true
        // The usual case, no escapes: one copy of the bytes, validated only if not ASCII.
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") {
                let slice = UnsafeBufferPointer(rebasing: bytes[start..<index])
                guard let text = ascii ? String(decoding: slice, as: UTF8.self) : String(validating: slice, as: UTF8.self) else {
                    throw error("invalid UTF-8 in a string")
                }
                index += 1
                return text
            }
            ascii = ascii && byte < 0x80
            if byte == UInt8(ascii: "\\") { break }
            guard byte >= 0x20 else { throw error("control character in a string") }
            index += 1
        }
        var scalars = Array(UnsafeBufferPointer(rebasing: bytes[start..<index]))
        while index < bytes.count {
            let byte = bytes[index]
            switch byte {
            case UInt8(ascii: "\""):
                guard let text = String(validating: scalars, as: UTF8.self) else { throw error("invalid UTF-8 in a string") }
                index += 1
                return text
            case UInt8(ascii: "\\"):
                index += 1
                guard index < bytes.count else { break }
                let escaped = bytes[index]
                index += 1
                switch escaped {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): scalars.append(escaped)
                case UInt8(ascii: "b"): scalars.append(0x08)
                case UInt8(ascii: "f"): scalars.append(0x0C)
                case UInt8(ascii: "n"): scalars.append(0x0A)
                case UInt8(ascii: "r"): scalars.append(0x0D)
                case UInt8(ascii: "t"): scalars.append(0x09)
                case UInt8(ascii: "u"):
                    var code = try readHex4()
                    if (0xD800..<0xDC00).contains(code) {
                        guard bytes.count - index >= 6, bytes[index] == UInt8(ascii: "\\"), bytes[index + 1] == UInt8(ascii: "u") else {
                            throw error("unpaired surrogate in a string")
                        }
                        index += 2
                        let low = try readHex4()
                        guard (0xDC00..<0xE000).contains(low) else { throw error("unpaired surrogate in a string") }
                        code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                    } else if (0xDC00..<0xE000).contains(code) {
                        throw error("unpaired surrogate in a string")
                    }
                    guard let scalar = Unicode.Scalar(code), let encoded = UTF8.encode(scalar) else {
                        throw error("invalid escape in a string")
                    }
                    scalars += encoded
                default:
                    throw error("invalid escape in a string")
                }
            default:
                guard byte >= 0x20 else { throw error("control character in a string") }
                scalars.append(byte)
                index += 1
            }
        }
        throw error("unterminated string")
    }

    private mutating func readHex4() throws(JSONReadError) -> UInt32 {
        guard bytes.count - index >= 4 else { throw error("invalid escape in a string") }
        var value: UInt32 = 0
        for _ in 0..<4 {
            guard let digit = Hex.digitValue(bytes[index]) else { throw error("invalid escape in a string") }
            value = value << 4 | UInt32(digit)
            index += 1
        }
        return value
    }
}

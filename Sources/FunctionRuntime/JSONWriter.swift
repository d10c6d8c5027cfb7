import Essentials

/// Writes the few JSON documents the runtime produces on every invocation (the proxy response,
/// the log lines) straight into bytes: keys in the order given (callers pass them sorted, so
/// the output is stable), slashes and non-ASCII text left as they are, control characters,
/// quotes and backslashes escaped (RFC 8259 section 7).
package struct JSONWriter {
    package private(set) var bytes: [UInt8] = []

    package init(capacity: Int = 256) {
        bytes.reserveCapacity(capacity)
    }

    package mutating func raw(_ text: StaticString) {
        bytes.append(contentsOf: UnsafeBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
    }

    package mutating func number(_ value: Int) {
        bytes += String(value).utf8
    }

    package mutating func string(_ text: String) {
        bytes.append(UInt8(ascii: "\""))
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\""): raw("\\\"")
            case UInt8(ascii: "\\"): raw("\\\\")
            case 0x0A: raw("\\n")
            case 0x0D: raw("\\r")
            case 0x09: raw("\\t")
            case 0x08: raw("\\b")
            case 0x0C: raw("\\f")
            case 0x00..<0x20:
                raw("\\u00")
                bytes += Hex.encode(CollectionOfOne(byte)).utf8
            default: bytes.append(byte)
            }
        }
        bytes.append(UInt8(ascii: "\""))
    }

    /// `{"key":"value",...}` with the keys sorted.
    package mutating func object(_ members: [String: String]) {
        bytes.append(UInt8(ascii: "{"))
        for (offset, key) in members.keys.sorted().enumerated() {
            if offset > 0 { bytes.append(UInt8(ascii: ",")) }
            string(key)
            bytes.append(UInt8(ascii: ":"))
            string(members[key] ?? "")
        }
        bytes.append(UInt8(ascii: "}"))
    }
}

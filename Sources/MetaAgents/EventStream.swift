import MetaWebhooks

/// The AWS event stream framing (`application/vnd.amazon.eventstream`), as Bedrock's
/// InvokeAgent streams its answer ("Event stream encoding" in the AWS SDK documentation):
///
///     [total length: UInt32][headers length: UInt32][prelude CRC32: UInt32]
///     [headers: name length UInt8, name, value type UInt8, value]...
///     [payload][message CRC32: UInt32]
///
/// All integers big-endian; the prelude CRC covers the first 8 bytes, the message CRC
/// everything before it (CRC-32, IEEE polynomial).
public struct EventStreamMessage: Sendable, Equatable {
    public enum HeaderValue: Sendable, Equatable {
        case bool(Bool)
        case byte(Int8)
        case short(Int16)
        case int(Int32)
        case long(Int64)
        case bytes([UInt8])
        case string(String)
        case timestamp(Int64)
        case uuid([UInt8])
    }

    public var headers: [(name: String, value: HeaderValue)]
    public var payload: [UInt8]

    public init(headers: [(String, HeaderValue)], payload: [UInt8]) {
        self.headers = headers.map { (name: $0.0, value: $0.1) }
        self.payload = payload
    }

    public static func == (lhs: EventStreamMessage, rhs: EventStreamMessage) -> Bool {
        lhs.payload == rhs.payload && lhs.headers.elementsEqual(rhs.headers) { $0.name == $1.name && $0.value == $1.value }
    }

    public func header(_ name: String) -> String? {
        guard let value = headers.first(where: { $0.name == name })?.value, case .string(let text) = value else { return nil }
        return text
    }

    /// The frame's bytes.
    public func encoded() -> [UInt8] {
        var headerBytes: [UInt8] = []
        for (name, value) in headers {
            let nameBytes = Array(name.utf8.prefix(255))
            headerBytes.append(UInt8(nameBytes.count))
            headerBytes += nameBytes
            switch value {
            case .bool(let flag): headerBytes.append(flag ? 0 : 1)
            case .byte(let number): headerBytes += [2, UInt8(bitPattern: number)]
            case .short(let number): headerBytes.append(3); headerBytes += bigEndian(UInt16(bitPattern: number))
            case .int(let number): headerBytes.append(4); headerBytes += bigEndian(UInt32(bitPattern: number))
            case .long(let number): headerBytes.append(5); headerBytes += bigEndian(UInt64(bitPattern: number))
            case .bytes(let bytes): headerBytes.append(6); headerBytes += bigEndian(UInt16(bytes.count)) + bytes
            case .string(let text):
                let bytes = Array(text.utf8)
                headerBytes.append(7)
                headerBytes += bigEndian(UInt16(bytes.count)) + bytes
            case .timestamp(let millis): headerBytes.append(8); headerBytes += bigEndian(UInt64(bitPattern: millis))
            case .uuid(let bytes): headerBytes.append(9); headerBytes += bytes.prefix(16)
            }
        }
        let total = 12 + headerBytes.count + payload.count + 4
        var frame = bigEndian(UInt32(total)) + bigEndian(UInt32(headerBytes.count))
        frame += bigEndian(CRC32.checksum(frame))
        frame += headerBytes + payload
        frame += bigEndian(CRC32.checksum(frame))
        return frame
    }
}

public struct EventStreamError: Error, Sendable, Equatable, CustomStringConvertible {
    public let description: String
}

/// Decodes frames as bytes arrive: a frame split across reads waits for its rest.
public struct EventStreamDecoder: Sendable {
    /// AWS limits: 16 MB per message, 128 KB of headers.
    public static let maxMessageBytes = 16 * 1024 * 1024
    public static let maxHeaderBytes = 128 * 1024

    private var buffer: [UInt8] = []

    public init() {}

    /// Whether bytes of an unfinished frame are waiting.
    public var hasPartialFrame: Bool { !buffer.isEmpty }

    /// Appends bytes and returns every complete frame they finish.
    public mutating func feed(_ bytes: some Sequence<UInt8>) throws(EventStreamError) -> [EventStreamMessage] {
        buffer += bytes
        var messages: [EventStreamMessage] = []
        while buffer.count >= 12 {
            let total = Int(readUInt32(buffer, 0))
            let headersLength = Int(readUInt32(buffer, 4))
            guard readUInt32(buffer, 8) == CRC32.checksum(buffer[0..<8]) else {
                throw EventStreamError(description: "event stream prelude checksum mismatch")
            }
            guard total <= Self.maxMessageBytes, headersLength <= Self.maxHeaderBytes, total >= 16 + headersLength else {
                throw EventStreamError(description: "event stream frame of \(total) bytes with \(headersLength) bytes of headers is out of bounds")
            }
            guard buffer.count >= total else { break }
            let frame = Array(buffer[0..<total])
            buffer.removeFirst(total)
            guard readUInt32(frame, total - 4) == CRC32.checksum(frame[0..<(total - 4)]) else {
                throw EventStreamError(description: "event stream message checksum mismatch")
            }
            let headers = try Self.parseHeaders(Array(frame[12..<(12 + headersLength)]))
            messages.append(EventStreamMessage(headers: headers, payload: Array(frame[(12 + headersLength)..<(total - 4)])))
        }
        return messages
    }

    private static func parseHeaders(_ bytes: [UInt8]) throws(EventStreamError) -> [(String, EventStreamMessage.HeaderValue)] {
        var headers: [(String, EventStreamMessage.HeaderValue)] = []
        var index = 0
        func take(_ count: Int) throws(EventStreamError) -> ArraySlice<UInt8> {
            guard count >= 0, index + count <= bytes.count else { throw EventStreamError(description: "event stream header is truncated") }
            defer { index += count }
            return bytes[index..<(index + count)]
        }
        while index < bytes.count {
            let nameLength = Int(try take(1).first ?? 0)
            let name = String(decoding: try take(nameLength), as: UTF8.self)
            let type = try take(1).first ?? 255
            let value: EventStreamMessage.HeaderValue
            switch type {
            case 0: value = .bool(true)
            case 1: value = .bool(false)
            case 2: value = .byte(Int8(bitPattern: try take(1).first ?? 0))
            case 3: value = .short(Int16(bitPattern: UInt16(readBig(try take(2)))))
            case 4: value = .int(Int32(bitPattern: UInt32(readBig(try take(4)))))
            case 5: value = .long(Int64(bitPattern: readBig(try take(8))))
            case 6: value = .bytes(Array(try take(Int(readBig(try take(2))))))
            case 7: value = .string(String(decoding: try take(Int(readBig(try take(2)))), as: UTF8.self))
            case 8: value = .timestamp(Int64(bitPattern: readBig(try take(8))))
            case 9: value = .uuid(Array(try take(16)))
            default: throw EventStreamError(description: "event stream header \(name) has unknown type \(type)")
            }
            headers.append((name, value))
        }
        return headers
    }
}

private func readUInt32(_ bytes: [UInt8], _ offset: Int) -> UInt32 {
    UInt32(bytes[offset]) << 24 | UInt32(bytes[offset + 1]) << 16 | UInt32(bytes[offset + 2]) << 8 | UInt32(bytes[offset + 3])
}

private func readBig(_ bytes: ArraySlice<UInt8>) -> UInt64 {
    bytes.reduce(0) { $0 << 8 | UInt64($1) }
}

private func bigEndian<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
    (0..<(T.bitWidth / 8)).reversed().map { UInt8(truncatingIfNeeded: value >> ($0 * 8)) }
}

/// CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320), as zlib computes it.
enum CRC32 {
    static let table: [UInt32] = (0..<256).map { index in
        var crc = UInt32(index)
        for _ in 0..<8 { crc = crc & 1 == 1 ? 0xEDB8_8320 ^ (crc >> 1) : crc >> 1 }
        return crc
    }

    static func checksum<C: Collection<UInt8>>(_ bytes: C) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes { crc = table[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8) }
        return crc ^ 0xFFFF_FFFF
    }
}

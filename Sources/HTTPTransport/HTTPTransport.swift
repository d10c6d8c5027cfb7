/// The outbound HTTP port: the Graph API, DynamoDB, SQS, the agents. The core depends on
/// this protocol only; the executables that call out plug in the AsyncHTTPClient adapter, and
/// `verify` and `auth-url` link no HTTP client at all.
public protocol HTTPTransport: Sendable {
    /// Sends one request and returns the whole response, whatever its status. Throws
    /// `TransportError` when no response arrived (connection refused, timeout, TLS failure).
    func send(_ request: OutboundRequest, timeout: Duration) async throws(TransportError) -> OutboundResponse
}

public struct OutboundRequest: Sendable {
    public var method: String
    public var url: String
    public var headers: [(String, String)]
    public var body: [UInt8]

    public init(method: String, url: String, headers: [(String, String)] = [], body: [UInt8] = []) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
    }
}

public struct OutboundResponse: Sendable {
    public var status: Int
    public var headers: [(String, String)]
    public var body: [UInt8]

    public init(status: Int, headers: [(String, String)] = [], body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    public func header(_ name: String) -> String? {
        let wanted = name.lowercased()
        return headers.first { $0.0.lowercased() == wanted }?.1
    }
}

/// No response arrived. The message names the host, never a URL's query (it may hold a token).
public struct TransportError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable { case timeout, connection, tooLarge, other }
    public let kind: Kind
    public let message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }
}

/// Exponential backoff with full jitter (AWS Architecture Blog, "Exponential Backoff And
/// Jitter"): attempt n waits a random time in [0, min(cap, base * 2^n)].
public struct Backoff: Sendable {
    public let maxAttempts: Int
    public let base: Duration
    public let cap: Duration

    public init(maxAttempts: Int = 3, base: Duration = .milliseconds(50), cap: Duration = .seconds(2)) {
        self.maxAttempts = maxAttempts
        self.base = base
        self.cap = cap
    }

    public func delay(afterAttempt attempt: Int) -> Duration {
        let ceiling = min(cap, base * (1 << min(attempt, 20)))
        let millis = Int64(ceiling.components.seconds * 1000 + ceiling.components.attoseconds / 1_000_000_000_000_000)
        return .milliseconds(Int64.random(in: 0...max(1, millis)))
    }
}

/// Percent-encoding for query strings and form bodies (RFC 3986 unreserved characters kept).
public enum FormEncoding {
    public static func encode(_ text: String) -> String {
        var result = ""
        let hex = Array("0123456789ABCDEF".utf8)
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "_"),
                UInt8(ascii: "."), UInt8(ascii: "~"):
                result.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                result += "%" + String(decoding: [hex[Int(byte >> 4)], hex[Int(byte & 0x0F)]], as: UTF8.self)
            }
        }
        return result
    }

    /// `a=1&b=2` from ordered pairs.
    public static func query(_ pairs: [(String, String)]) -> String {
        pairs.map { "\(encode($0.0))=\(encode($0.1))" }.joined(separator: "&")
    }

    /// Percent-decodes; with `plusIsSpace`, `+` is a space (form encoding, query strings).
    /// Never fails: a malformed escape is kept as it is, invalid UTF-8 becomes U+FFFD.
    public static func decode(_ text: some StringProtocol, plusIsSpace: Bool) -> String {
        let utf8 = Array(text.utf8)
        var bytes: [UInt8] = []
        bytes.reserveCapacity(utf8.count)
        var index = 0
        while index < utf8.count {
            let byte = utf8[index]
            if byte == UInt8(ascii: "%"), index + 2 < utf8.count,
                let high = Hex.digitValue(utf8[index + 1]), let low = Hex.digitValue(utf8[index + 2])
            {
                bytes.append(high << 4 | low)
                index += 3
            } else {
                bytes.append(plusIsSpace && byte == UInt8(ascii: "+") ? UInt8(ascii: " ") : byte)
                index += 1
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

import Essentials
import SafeJSON

/// Header fields matched case-insensitively, keeping the order and the case they arrived in.
public struct HTTPHeaders: Sendable, Equatable, Sequence {
    public private(set) var fields: [(name: String, value: String)]

    public init(_ fields: [(String, String)] = []) {
        self.fields = fields.map { (name: $0.0, value: $0.1) }
    }

    public static func == (lhs: HTTPHeaders, rhs: HTTPHeaders) -> Bool {
        lhs.fields.elementsEqual(rhs.fields) { $0.name == $1.name && $0.value == $1.value }
    }

    /// The first value of `name`, whatever its case.
    public subscript(name: String) -> String? {
        fields.first { Self.sameName($0.name, name) }?.value
    }

    /// Every value of `name`, whatever its case.
    public func values(_ name: String) -> [String] {
        fields.filter { Self.sameName($0.name, name) }.map(\.value)
    }

    /// Whether two field names are equal ignoring ASCII case (RFC 9110 section 5.1), without
    /// building lowercased copies: header lookups sit on every invocation's path.
    static func sameName(_ lhs: String, _ rhs: String) -> Bool {
        HeaderName.equal(lhs, rhs)
    }

    public mutating func add(_ name: String, _ value: String) {
        fields.append((name: name, value: value))
    }

    /// Replaces every value of `name` with `value`.
    public mutating func set(_ name: String, _ value: String) {
        fields.removeAll { Self.sameName($0.name, name) }
        fields.append((name: name, value: value))
    }

    public func makeIterator() -> IndexingIterator<[(name: String, value: String)]> {
        fields.makeIterator()
    }
}

/// One HTTP request as the functions see it, whichever API Gateway payload format carried it.
public struct HTTPRequest: Sendable, Equatable {
    public var method: String
    public var path: String
    public var headers: HTTPHeaders
    /// Every value of every query parameter, in arrival order, already percent-decoded.
    public var query: [String: [String]]
    public var cookies: [String]
    /// The body bytes exactly as the client sent them (base64-decoded when the event said so).
    public var body: [UInt8]

    public init(
        method: String, path: String, headers: HTTPHeaders = HTTPHeaders(),
        query: [String: [String]] = [:], cookies: [String] = [], body: [UInt8] = []
    ) {
        self.method = method
        self.path = path
        self.headers = headers
        self.query = query
        self.cookies = cookies
        self.body = body
    }

    /// The first value of a query parameter.
    public func queryValue(_ name: String) -> String? { query[name]?.first }
}

/// One HTTP response, encoded back as an API Gateway proxy response.
public struct HTTPResponse: Sendable, Equatable {
    public var status: Int
    public var headers: [String: String]
    public var body: String

    public init(status: Int, headers: [String: String] = [:], body: String = "") {
        self.status = status
        self.headers = headers
        self.body = body
    }

    public static func text(_ status: Int, _ body: String) -> HTTPResponse {
        HTTPResponse(status: status, headers: ["Content-Type": "text/plain; charset=utf-8"], body: body)
    }

    /// A JSON body from an `Encodable` value (keys sorted, so the output is stable).
    public static func json<T: Encodable>(_ status: Int, _ value: T) -> HTTPResponse {
        let body = (try? JSONNodeEncoder.encode(value)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
        return HTTPResponse(status: status, headers: ["Content-Type": "application/json"], body: body)
    }

    /// `{"error": code, "message": message}`, the shape of every error answer.
    public static func error(_ status: Int, code: String, message: String) -> HTTPResponse {
        json(status, ["error": code, "message": message])
    }
}

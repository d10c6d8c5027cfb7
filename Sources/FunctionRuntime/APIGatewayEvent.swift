import Essentials
import SafeJSON

/// API Gateway's Lambda proxy integration, both payload formats:
/// - REST API, payload 1.0: `httpMethod`, `path`, `headers`, `multiValueHeaders`,
///   `queryStringParameters`, `multiValueQueryStringParameters`;
/// - HTTP API, payload 2.0: `version: "2.0"`, `rawPath`, `rawQueryString`,
///   `requestContext.http.method`, `cookies`, comma-joined header values.
/// (AWS Lambda Developer Guide, "Using AWS Lambda with Amazon API Gateway";
///  API Gateway Developer Guide, "Working with AWS Lambda proxy integrations for HTTP APIs".)
public enum APIGatewayEvent {
    /// Why an event could not be read as an API Gateway request.
    public struct DecodingError: FunctionError, Equatable {
        public let errorMessage: String
        public var errorType: String { "InvalidEvent" }
    }

    public static func decode(_ bytes: [UInt8]) throws(DecodingError) -> HTTPRequest {
        let document: JSONNode
        do {
            document = try JSONReader.read(bytes)
        } catch {
            throw DecodingError(errorMessage: "the event is not an API Gateway proxy event: malformed JSON (\(error.description))")
        }
        return try RawEvent(document).request()
    }

    /// The proxy response, as both payload formats accept it:
    /// `{"body","headers","isBase64Encoded","statusCode"}`, keys sorted.
    public static func encode(_ response: HTTPResponse) -> [UInt8] {
        var writer = JSONWriter(capacity: 96 + response.body.utf8.count)
        writer.raw(#"{"body":"#)
        writer.string(response.body)
        writer.raw(#","headers":"#)
        writer.object(response.headers)
        writer.raw(#","isBase64Encoded":false,"statusCode":"#)
        writer.number(response.status)
        writer.raw("}")
        return writer.bytes
    }
}

private struct RawEvent {
    let version: String?
    let httpMethod: String?
    let path: String?
    let rawPath: String?
    let rawQueryString: String?
    let headers: [(String, String)]?
    let multiValueHeaders: [(String, [String])]?
    let queryStringParameters: [(String, String)]?
    let multiValueQueryStringParameters: [(String, [String])]?
    let cookies: [String]?
    let body: String?
    let isBase64Encoded: Bool?
    /// `requestContext.http.method` / `.path` (2.0) and `requestContext.httpMethod` (1.0).
    let contextMethod: String?
    let contextPath: String?
    let contextHTTPMethod: String?

    init(_ event: JSONNode) throws(APIGatewayEvent.DecodingError) {
        guard case .object = event else { throw Self.wrongType("the top level") }
        version = try Self.string(event, "version")
        httpMethod = try Self.string(event, "httpMethod")
        path = try Self.string(event, "path")
        rawPath = try Self.string(event, "rawPath")
        rawQueryString = try Self.string(event, "rawQueryString")
        headers = try Self.stringMap(event, "headers")
        multiValueHeaders = try Self.stringListMap(event, "multiValueHeaders")
        queryStringParameters = try Self.stringMap(event, "queryStringParameters")
        multiValueQueryStringParameters = try Self.stringListMap(event, "multiValueQueryStringParameters")
        cookies = try Self.stringList(event["cookies"], at: "cookies")
        body = try Self.string(event, "body")
        switch event["isBase64Encoded"] {
        case nil, .null?: isBase64Encoded = nil
        case .bool(let flag)?: isBase64Encoded = flag
        default: throw Self.wrongType("isBase64Encoded")
        }
        // An absent or null object reads as an empty one: its members are all absent.
        let context = try Self.object(event["requestContext"], at: "requestContext") ?? .object([])
        contextHTTPMethod = try Self.string(context, "httpMethod", at: "requestContext.httpMethod")
        let http = try Self.object(context["http"], at: "requestContext.http") ?? .object([])
        contextMethod = try Self.string(http, "method", at: "requestContext.http.method")
        contextPath = try Self.string(http, "path", at: "requestContext.http.path")
    }

    private static func wrongType(_ path: String) -> APIGatewayEvent.DecodingError {
        .init(errorMessage: "the event is not an API Gateway proxy event: wrong type at \(path)")
    }

    /// A string member; absent and null are nil.
    private static func string(_ object: JSONNode, _ key: String, at path: String? = nil) throws(APIGatewayEvent.DecodingError) -> String? {
        switch object[key] {
        case nil, .null?: return nil
        case .string(let text)?: return text
        default: throw wrongType(path ?? key)
        }
    }

    private static func object(_ node: JSONNode?, at path: String) throws(APIGatewayEvent.DecodingError) -> JSONNode? {
        switch node {
        case nil, .null?: return nil
        case .object?: return node
        default: throw wrongType(path)
        }
    }

    private static func stringList(_ node: JSONNode?, at path: String) throws(APIGatewayEvent.DecodingError) -> [String]? {
        switch node {
        case nil, .null?: return nil
        case .array(let elements)?:
            var strings: [String] = []
            strings.reserveCapacity(elements.count)
            for (offset, element) in elements.enumerated() {
                guard case .string(let text) = element else { throw wrongType("\(path)[\(offset)]") }
                strings.append(text)
            }
            return strings
        default: throw wrongType(path)
        }
    }

    /// An object of strings; a null value is an absent one.
    private static func stringMap(_ event: JSONNode, _ key: String) throws(APIGatewayEvent.DecodingError) -> [(String, String)]? {
        guard case .object(let members)? = try object(event[key], at: key) else { return nil }
        var entries: [(String, String)] = []
        entries.reserveCapacity(members.count)
        for (name, value) in members {
            switch value {
            case .null: continue
            case .string(let text): entries.append((name, text))
            default: throw wrongType("\(key).\(name)")
            }
        }
        return entries
    }

    /// An object of string arrays; a null value is an absent one.
    private static func stringListMap(_ event: JSONNode, _ key: String) throws(APIGatewayEvent.DecodingError) -> [(String, [String])]? {
        guard case .object(let members)? = try object(event[key], at: key) else { return nil }
        var entries: [(String, [String])] = []
        entries.reserveCapacity(members.count)
        for (name, value) in members {
            if let values = try stringList(value, at: "\(key).\(name)") { entries.append((name, values)) }
        }
        return entries
    }

    func request() throws(APIGatewayEvent.DecodingError) -> HTTPRequest {
        let isV2 = version == "2.0"
        guard let method = (isV2 ? contextMethod : nil) ?? httpMethod ?? contextHTTPMethod ?? contextMethod,
            !method.isEmpty
        else {
            throw .init(errorMessage: "the event is not an API Gateway proxy event: no HTTP method")
        }
        let path = (isV2 ? rawPath ?? contextPath : nil) ?? path ?? rawPath ?? "/"

        var headers = HTTPHeaders()
        if let multi = multiValueHeaders, !multi.isEmpty {
            for (name, values) in multi {
                for value in values { headers.add(name, value) }
            }
        } else {
            for (name, value) in self.headers ?? [] {
                headers.add(name, value)
            }
        }

        var query: [String: [String]] = [:]
        if isV2, let raw = rawQueryString, !raw.isEmpty {
            query = QueryString.parse(raw)
        } else if let multi = multiValueQueryStringParameters, !multi.isEmpty {
            for (name, values) in multi { query[name] = values }
        } else {
            for (name, value) in queryStringParameters ?? [] {
                query[name] = isV2 ? value.split(separator: ",", omittingEmptySubsequences: false).map(String.init) : [value]
            }
        }

        var cookies = self.cookies ?? []
        if cookies.isEmpty {
            for header in headers.values("cookie") {
                cookies += header.split(separator: ";").map { $0.trimmingOptionalWhitespace() }.filter { !$0.isEmpty }
            }
        }

        var body: [UInt8] = []
        if let text = self.body {
            if isBase64Encoded == true {
                guard let decoded = Base64.decode(text) else {
                    throw .init(errorMessage: "the event's body is marked isBase64Encoded but is not valid base64")
                }
                body = decoded
            } else {
                body = Array(text.utf8)
            }
        }
        return HTTPRequest(method: method.uppercased(), path: path, headers: headers, query: query, cookies: cookies, body: body)
    }
}

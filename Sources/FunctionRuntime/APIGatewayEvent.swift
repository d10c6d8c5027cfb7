#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

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
        let raw: RawEvent
        do {
            raw = try JSONDecoder().decode(RawEvent.self, from: Data(bytes))
        } catch {
            throw DecodingError(errorMessage: "the event is not an API Gateway proxy event: \(describe(error))")
        }
        return try raw.request()
    }

    /// The proxy response, as both payload formats accept it.
    public static func encode(_ response: HTTPResponse) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let raw = RawResponse(
            statusCode: response.status, headers: response.headers, body: response.body, isBase64Encoded: false)
        return (try? encoder.encode(raw)).map(Array.init) ?? Array(#"{"statusCode":500}"#.utf8)
    }

    /// A decoding error in words a user can act on, without echoing the input.
    static func describe(_ error: any Error) -> String {
        switch error {
        case Swift.DecodingError.typeMismatch(_, let context), Swift.DecodingError.valueNotFound(_, let context):
            return "wrong type at \(path(context.codingPath))"
        case Swift.DecodingError.keyNotFound(let key, let context):
            return "missing \(path(context.codingPath + [key]))"
        case Swift.DecodingError.dataCorrupted(let context):
            return context.codingPath.isEmpty ? "malformed JSON" : "invalid value at \(path(context.codingPath))"
        default:
            return "malformed JSON"
        }
    }

    private static func path(_ keys: [any CodingKey]) -> String {
        keys.isEmpty ? "the top level" : keys.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
    }
}

private struct RawResponse: Encodable {
    let statusCode: Int
    let headers: [String: String]
    let body: String
    let isBase64Encoded: Bool
}

private struct RawEvent: Decodable {
    struct RequestContext: Decodable {
        struct HTTP: Decodable {
            let method: String?
            let path: String?
        }
        let http: HTTP?
        let httpMethod: String?
    }

    let version: String?
    let httpMethod: String?
    let path: String?
    let rawPath: String?
    let rawQueryString: String?
    let headers: [String: String?]?
    let multiValueHeaders: [String: [String]?]?
    let queryStringParameters: [String: String?]?
    let multiValueQueryStringParameters: [String: [String]?]?
    let cookies: [String]?
    let body: String?
    let isBase64Encoded: Bool?
    let requestContext: RequestContext?

    func request() throws(APIGatewayEvent.DecodingError) -> HTTPRequest {
        let isV2 = version == "2.0"
        guard let method = (isV2 ? requestContext?.http?.method : nil) ?? httpMethod
            ?? requestContext?.httpMethod ?? requestContext?.http?.method, !method.isEmpty
        else {
            throw .init(errorMessage: "the event is not an API Gateway proxy event: no HTTP method")
        }
        let path = (isV2 ? rawPath ?? requestContext?.http?.path : nil) ?? path ?? rawPath ?? "/"

        var headers = HTTPHeaders()
        if let multi = multiValueHeaders, !multi.isEmpty {
            for (name, values) in multi.sorted(by: { $0.key < $1.key }) {
                for value in values ?? [] { headers.add(name, value) }
            }
        } else {
            for (name, value) in (self.headers ?? [:]).sorted(by: { $0.key < $1.key }) {
                if let value { headers.add(name, value) }
            }
        }

        var query: [String: [String]] = [:]
        if isV2, let raw = rawQueryString, !raw.isEmpty {
            query = QueryString.parse(raw)
        } else if let multi = multiValueQueryStringParameters, !multi.isEmpty {
            for (name, values) in multi { query[name] = values ?? [] }
        } else {
            for (name, value) in queryStringParameters ?? [:] {
                if let value { query[name] = isV2 ? value.split(separator: ",", omittingEmptySubsequences: false).map(String.init) : [value] }
            }
        }

        var cookies = self.cookies ?? []
        if cookies.isEmpty {
            for header in headers.values("cookie") {
                cookies += header.split(separator: ";").map { $0.trimmingSpaces() }.filter { !$0.isEmpty }
            }
        }

        var body: [UInt8] = []
        if let text = self.body {
            if isBase64Encoded == true {
                guard let data = Data(base64Encoded: text) else {
                    throw .init(errorMessage: "the event's body is marked isBase64Encoded but is not valid base64")
                }
                body = Array(data)
            } else {
                body = Array(text.utf8)
            }
        }
        return HTTPRequest(method: method.uppercased(), path: path, headers: headers, query: query, cookies: cookies, body: body)
    }
}

import Foundation

public enum TestEvents {
    /// A sample event from `events/`.
    public static func load(_ name: String) -> [UInt8] { Executables.event(name) }

    public static func text(_ name: String) -> String { String(decoding: load(name), as: UTF8.self) }

    /// A REST (payload 1.0) GET event with the given query.
    public static func restGET(path: String, query: [String: String]) -> [UInt8] {
        let object: [String: Any] = [
            "httpMethod": "GET", "path": path, "headers": ["Host": "example.test"],
            "queryStringParameters": query, "isBase64Encoded": false,
        ]
        return Array((try? JSONSerialization.data(withJSONObject: object)) ?? Data())
    }

    /// An HTTP API (payload 2.0) POST of a form, as a browser sends it from a page of `host`
    /// (`origin`: the page's origin; nil: no Origin header).
    public static func formPOST(path: String, form: [(String, String)], host: String = "example.test", origin: String? = "https://example.test") -> [UInt8] {
        var headers = ["host": host, "content-type": "application/x-www-form-urlencoded"]
        if let origin { headers["origin"] = origin }
        let body = form.map {
            "\($0.0.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? "")=\($0.1.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? "")"
        }
        .joined(separator: "&")
        let object: [String: Any] = [
            "version": "2.0", "rawPath": path, "rawQueryString": "", "headers": headers,
            "requestContext": ["http": ["method": "POST", "path": path]], "body": body, "isBase64Encoded": false,
        ]
        return Array((try? JSONSerialization.data(withJSONObject: object)) ?? Data())
    }

    /// The question's nonce on a consent page (its form's hidden `consent` field).
    public static func consentNonce(in page: String) -> String? {
        guard let start = page.range(of: #"name="consent" value=""#) else { return nil }
        return String(page[start.upperBound...].prefix { $0 != "\"" })
    }
}

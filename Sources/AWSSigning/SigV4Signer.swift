import Essentials
import HTTPTransport

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// AWS credentials: Lambda always hands out temporary ones, with a session token.
public struct AWSCredentials: Sendable, Equatable {
    public let accessKeyID: String
    public let secretAccessKey: String
    public let sessionToken: String?

    public init(accessKeyID: String, secretAccessKey: String, sessionToken: String? = nil) {
        self.accessKeyID = accessKeyID
        self.secretAccessKey = secretAccessKey
        self.sessionToken = sessionToken
    }

    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and the optional `AWS_SESSION_TOKEN`.
    public static func fromEnvironment(_ values: [String: String]) -> AWSCredentials? {
        guard let key = values["AWS_ACCESS_KEY_ID"], !key.isEmpty,
            let secret = values["AWS_SECRET_ACCESS_KEY"], !secret.isEmpty
        else { return nil }
        let token = values["AWS_SESSION_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
        return AWSCredentials(accessKeyID: key, secretAccessKey: secret, sessionToken: token)
    }
}

/// AWS Signature Version 4 for request headers, as the AWS General Reference describes it
/// ("Create a signed AWS API request"), for every service but S3 (path segments are encoded
/// twice). Checked against AWS's public SigV4 test suite.
public struct SigV4Signer: Sendable {
    public let credentials: AWSCredentials
    public let region: String
    public let service: String

    public init(credentials: AWSCredentials, region: String, service: String) {
        self.credentials = credentials
        self.region = region
        self.service = service
    }

    /// The headers to send: `headers` plus `Host` (unless given), `X-Amz-Date`,
    /// `X-Amz-Security-Token` (signed) and `Authorization`.
    /// - Parameter date: seconds since 1970, UTC.
    public func sign(
        method: String, url: String, headers: [(String, String)], body: [UInt8], date: Int64
    ) -> [(String, String)] {
        let parsed = ParsedURL(url)
        let amzDate = Self.amzDate(date)
        var all = headers
        if !all.contains(where: { HeaderName.equal($0.0, "host") }) { all.append(("Host", parsed.hostHeader)) }
        all.removeAll { HeaderName.equal($0.0, "x-amz-date") || HeaderName.equal($0.0, "authorization") }
        all.append(("X-Amz-Date", amzDate))
        if let token = credentials.sessionToken {
            all.removeAll { HeaderName.equal($0.0, "x-amz-security-token") }
            all.append(("X-Amz-Security-Token", token))
        }
        let parts = canonicalParts(method: method, url: parsed, headers: all, body: body, amzDate: amzDate)
        all.append(("Authorization", parts.authorization))
        return all
    }

    /// Every intermediate value, for tests and debugging (no secret in any of them).
    public struct Parts: Sendable {
        public let canonicalRequest: String
        public let stringToSign: String
        public let signedHeaders: String
        public let signature: String
        public let authorization: String
    }

    public func canonicalParts(method: String, url: String, headers: [(String, String)], body: [UInt8]) -> Parts {
        let amzDate = headers.first { HeaderName.equal($0.0, "x-amz-date") }?.1 ?? ""
        return canonicalParts(method: method, url: ParsedURL(url), headers: headers, body: body, amzDate: amzDate)
    }

    private func canonicalParts(method: String, url: ParsedURL, headers: [(String, String)], body: [UInt8], amzDate: String) -> Parts {
        var grouped: [String: [String]] = [:]
        for (name, value) in headers {
            grouped[name.lowercased(), default: []].append(Self.normalizeHeaderValue(value))
        }
        let names = grouped.keys.sorted()
        let canonicalHeaders = names.map { "\($0):\(grouped[$0]!.joined(separator: ","))\n" }.joined()
        let signedHeaders = names.joined(separator: ";")
        let canonicalRequest = [
            method.uppercased(),
            Self.canonicalPath(url.path),
            Self.canonicalQuery(url.query),
            canonicalHeaders,
            signedHeaders,
            Hex.encode(SHA256.hash(body)),
        ].joined(separator: "\n")
        let day = String(amzDate.prefix(8))
        let scope = "\(day)/\(region)/\(service)/aws4_request"
        let stringToSign = [
            "AWS4-HMAC-SHA256", amzDate, scope, Hex.encode(SHA256.hash(Array(canonicalRequest.utf8))),
        ].joined(separator: "\n")
        var key = Array("AWS4\(credentials.secretAccessKey)".utf8)
        for part in [day, region, service, "aws4_request"] {
            key = HMACSHA256.authenticationCode(for: Array(part.utf8), key: key)
        }
        let signature = Hex.encode(HMACSHA256.authenticationCode(for: Array(stringToSign.utf8), key: key))
        let authorization =
            "AWS4-HMAC-SHA256 Credential=\(credentials.accessKeyID)/\(scope), "
            + "SignedHeaders=\(signedHeaders), Signature=\(signature)"
        return Parts(
            canonicalRequest: canonicalRequest, stringToSign: stringToSign, signedHeaders: signedHeaders,
            signature: signature, authorization: authorization)
    }

    // MARK: Canonical forms

    static func normalizeHeaderValue(_ value: String) -> String {
        value.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).joined(separator: " ")
    }

    /// Each segment of the path as sent, URI-encoded once more (every service but S3).
    static func canonicalPath(_ path: String) -> String {
        guard !path.isEmpty else { return "/" }
        return path.split(separator: "/", omittingEmptySubsequences: false).map { uriEncode(String($0)) }.joined(separator: "/")
    }

    static func canonicalQuery(_ query: String) -> String {
        guard !query.isEmpty else { return "" }
        let pairs = query.split(separator: "&").map { pair -> (String, String) in
            let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let name = uriEncode(percentDecode(String(kv[0])))
            let value = kv.count > 1 ? uriEncode(percentDecode(String(kv[1]))) : ""
            return (name, value)
        }
        return pairs.sorted { $0.0 == $1.0 ? $0.1 < $1.1 : $0.0 < $1.0 }.map { "\($0.0)=\($0.1)" }.joined(separator: "&")
    }

    /// RFC 3986 unreserved characters stay, everything else is `%XX` (upper-case hex).
    public static func uriEncode(_ text: String) -> String { FormEncoding.encode(text) }

    static func percentDecode(_ text: String) -> String { FormEncoding.decode(text, plusIsSpace: false) }

    /// `YYYYMMDDTHHMMSSZ` for a time in seconds since 1970.
    public static func amzDate(_ seconds: Int64) -> String {
        let utc = UTCFields(epochSeconds: seconds)
        return "\(utc.year)\(utc.month)\(utc.day)T\(utc.hour)\(utc.minute)\(utc.second)Z"
    }

    /// Seconds since 1970, now.
    public static func now() -> Int64 { WallClock.epochSeconds() }
}

/// Just enough of a URL for signing: host (with a non-default port), path, raw query.
struct ParsedURL {
    let hostHeader: String
    let path: String
    let query: String

    init(_ url: String) {
        var rest = Substring(url)
        var defaultPort = "443"
        if let colon = rest.firstIndex(of: ":"), rest[colon...].hasPrefix("://") {
            if rest[..<colon].lowercased() == "http" { defaultPort = "80" }
            rest = rest[rest.index(colon, offsetBy: 3)...]
        }
        let authorityEnd = rest.firstIndex(where: { $0 == "/" || $0 == "?" }) ?? rest.endIndex
        var authority = String(rest[..<authorityEnd])
        if authority.hasSuffix(":\(defaultPort)") { authority.removeLast(defaultPort.count + 1) }
        hostHeader = authority
        let target = rest[authorityEnd...]
        if let question = target.firstIndex(of: "?") {
            path = String(target[..<question])
            query = String(target[target.index(after: question)...])
        } else {
            path = String(target)
            query = ""
        }
    }
}

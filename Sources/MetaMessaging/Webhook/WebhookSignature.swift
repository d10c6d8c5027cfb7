import HTTPTransport

/// Meta signs every webhook: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body,
/// keyed by the app secret>` (Meta for Developers, "Webhooks", Validate Payloads). The raw
/// bytes matter: Meta escapes non-ASCII as `\uXXXX` and `/` as `\/`, so re-serialised JSON
/// would not match.
public struct WebhookSignature: Sendable {
    public enum Failure: String, Sendable, Equatable {
        case missing = "missing_signature"
        case malformed = "malformed_signature"
        case mismatch = "invalid_signature"
    }

    private let key: [UInt8]

    public init(appSecret: String) {
        key = Array(appSecret.utf8)
    }

    /// nil when the signature is right; otherwise why not. Constant time in the digest.
    public func check(body: [UInt8], header: String?) -> Failure? {
        guard let header else { return .missing }
        let trimmed = header.trimmingSpaces()
        guard trimmed.lowercased().hasPrefix("sha256="),
            let given = Hex.decode(String(trimmed.dropFirst(7))), given.count == 32
        else { return .malformed }
        return constantTimeEquals(given, HMACSHA256.sign(body, key: key)) ? nil : .mismatch
    }

    /// The header value Meta would send for `body` (tests, the local samples).
    public func header(for body: [UInt8]) -> String {
        "sha256=" + Hex.encode(HMACSHA256.sign(body, key: key))
    }
}

extension StringProtocol {
    func trimmingSpaces() -> String {
        var view = Substring(self)
        while let first = view.first, first.isWhitespace { view.removeFirst() }
        while let last = view.last, last.isWhitespace { view.removeLast() }
        return String(view)
    }
}

import Essentials

/// Meta signs every webhook: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body,
/// keyed by the app secret>` (Meta for Developers, "Webhooks", Validate Payloads). The raw
/// bytes matter: Meta escapes non-ASCII as `\uXXXX` and `/` as `\/`, so re-serialised JSON
/// would not match.
public struct WebhookSignature: Sendable {
    public enum Failure: String, Sendable, Equatable, CaseIterable {
        case missing = "missing_signature"
        case malformed = "malformed_signature"
        case mismatch = "invalid_signature"
    }

    private let key: [UInt8]
    /// Further secrets a body may be signed with: the Instagram app's, whose webhooks
    /// (Instagram API with Instagram Login) Meta signs with that secret, not the Meta app's.
    private let otherKeys: [[UInt8]]

    public init(appSecret: String, otherSecrets: [String] = []) {
        key = Array(appSecret.utf8)
        otherKeys = otherSecrets.filter { !$0.isEmpty && $0 != appSecret }.map { Array($0.utf8) }
    }

    /// nil when the signature is right under one of the secrets; otherwise why not. Every
    /// secret is tried, each compared in constant time.
    public func check(body: [UInt8], header: String?) -> Failure? {
        guard let header else { return .missing }
        let trimmed = header.trimmingSpaces()
        guard trimmed.lowercased().hasPrefix("sha256="),
            let given = Hex.decode(String(trimmed.dropFirst(7))), given.count == 32
        else { return .malformed }
        var matched = false
        for key in [key] + otherKeys where constantTimeEquals(given, HMACSHA256.sign(body, key: key)) { matched = true }
        return matched ? nil : .mismatch
    }

    /// The header value Meta would send for `body` (tests, the local samples).
    public func header(for body: [UInt8]) -> String {
        "sha256=" + Hex.encode(HMACSHA256.sign(body, key: key))
    }
}

extension StringProtocol {
    /// The text without the white space at either end (shared by the modules of the package).
    package func trimmingSpaces() -> String {
        var view = Substring(self)
        while let first = view.first, first.isWhitespace { view.removeFirst() }
        while let last = view.last, last.isWhitespace { view.removeLast() }
        return String(view)
    }
}

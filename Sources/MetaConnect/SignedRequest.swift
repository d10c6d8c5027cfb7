import Essentials
import MetaWebhooks

/// Meta's `signed_request` (the deauthorize and data-deletion callbacks): two base64url parts
/// joined by a dot, the signature an HMAC-SHA256 of the payload part (as sent) under the app
/// secret, the payload JSON `{"algorithm": "HMAC-SHA256", "issued_at", "user_id", ...}`.
/// (Meta for Developers, "Data Deletion Request Callback" and "Deauthorize Callback".)
public struct SignedRequest: Sendable, Equatable {
    public let userId: String
    public let issuedAt: Int64

    public enum Failure: String, Error, Sendable, CaseIterable {
        case malformed = "malformed_signed_request"
        case forged = "invalid_signature"
        case algorithm = "unsupported_algorithm"
        case expired = "expired_signed_request"
    }

    /// How long after `issued_at` a request is still taken (Meta sends it at once).
    public static let maxAge: Int64 = 24 * 3600

    public static func verify(_ text: String, appSecret: String, now: Int64) throws(Failure) -> SignedRequest {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 2, text.utf8.count <= 8192 else { throw .malformed }
        // Padding is optional in base64url; some senders add it.
        func unpadded(_ part: Substring) -> String { String(part.reversed().drop { $0 == "=" }.reversed()) }
        let payloadPart = unpadded(parts[1])
        guard let signature = Base64URL.decode(unpadded(parts[0])), signature.count == 32, let payload = Base64URL.decode(payloadPart) else {
            throw .malformed
        }
        let expected = HMACSHA256.sign(Array(parts[1].utf8), key: Array(appSecret.utf8))
        let expectedUnpadded = HMACSHA256.sign(Array(payloadPart.utf8), key: Array(appSecret.utf8))
        guard constantTimeEquals(signature, expected) || constantTimeEquals(signature, expectedUnpadded) else { throw .forged }
        guard let document = try? JSON.parse(payload, limits: JSONLimits(maxBytes: 4096, maxDepth: 8)) else { throw .malformed }
        guard document["algorithm"]?.string == "HMAC-SHA256" else { throw .algorithm }
        guard let userId = document["user_id"]?.id, let issuedAt = document["issued_at"]?.int64 else { throw .malformed }
        guard issuedAt <= now + 300, now - issuedAt <= maxAge else { throw .expired }
        return SignedRequest(userId: userId, issuedAt: issuedAt)
    }
}

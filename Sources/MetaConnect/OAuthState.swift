import Essentials
import HTTPTransport
import KeyValueStore
import MetaTenancy
import MetaWebhooks
import SafeJSON

/// The OAuth `state`: what the callback needs to know, signed so it cannot be altered.
/// Format: `base64url(JSON payload) "." base64url(HMAC-SHA256(first part, OAUTH_STATE_SECRET))`.
public struct OAuthState: Sendable, Equatable, Codable {
    public let businessId: String
    public let locationId: String
    public let pageId: String?
    public let redirectUri: String
    /// 128 random bits, also the key that makes a state single-use.
    public let nonce: String
    /// Epoch seconds after which the state is refused.
    public let expiresAt: Int64
    /// The business's and the location's names as the platform calling `auth-url` gave them
    /// (`DisplayName`), shown to the person before anything is connected.
    public var businessName: String? = nil
    public var locationName: String? = nil

    enum CodingKeys: String, CodingKey {
        case businessId = "b", locationId = "l", pageId = "p", redirectUri = "r", nonce = "n", expiresAt = "e", businessName = "bn",
            locationName = "ln"
    }

    public init(
        businessId: String, locationId: String, pageId: String?, redirectUri: String, nonce: String, expiresAt: Int64, businessName: String? = nil,
        locationName: String? = nil
    ) {
        self.businessName = businessName
        self.locationName = locationName
        self.businessId = businessId
        self.locationId = locationId
        self.pageId = pageId
        self.redirectUri = redirectUri
        self.nonce = nonce
        self.expiresAt = expiresAt
    }

    public static func randomNonce() -> String {
        var generator = SystemRandomNumberGenerator()
        return Hex.encode((0..<16).map { _ in UInt8.random(in: 0...255, using: &generator) })
    }

    public enum Failure: String, Error, Sendable, CaseIterable {
        case malformed = "invalid_state"
        case forged = "tampered_state"
        case expired = "expired_state"
    }

    public func signed(secret: String) -> String {
        let payload = Base64URL.encode((try? JSONNodeEncoder.encode(self)) ?? [])
        let signature = Base64URL.encode(HMACSHA256.sign(Array(payload.utf8), key: Array(secret.utf8)))
        return "\(payload).\(signature)"
    }

    /// The state if its signature holds and it has not expired.
    public static func verify(_ text: String, secret: String, now: Int64) throws(Failure) -> OAuthState {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 2, Base64URL.decode(String(parts[1])) != nil else { throw .malformed }
        // The signature's text is compared, not its decoded bytes: base64's unused low bits in
        // the last character would otherwise let an altered token pass.
        let expected = Base64URL.encode(HMACSHA256.sign(Array(parts[0].utf8), key: Array(secret.utf8)))
        guard constantTimeEquals(Array(parts[1].utf8), Array(expected.utf8)) else { throw .forged }
        guard let payload = Base64URL.decode(String(parts[0])),
            let state = try? SafeJSON.decode(OAuthState.self, from: payload, limits: JSONLimits(maxBytes: 4096, maxDepth: 4))
        else { throw .malformed }
        guard state.expiresAt > now else { throw .expired }
        return state
    }
}

/// RFC 4648 section 5: `-` and `_` for `+` and `/`, no padding.
enum Base64URL {
    static func encode(_ bytes: [UInt8]) -> String {
        String(
            Base64.encode(bytes).compactMap { character -> Character? in
                switch character {
                case "+": "-"
                case "/": "_"
                case "=": nil
                default: character
                }
            })
    }

    static func decode(_ text: String) -> [UInt8]? {
        guard text.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }) else { return nil }
        var base64 = String(text.map { $0 == "-" ? "+" : $0 == "_" ? "/" : $0 })
        while base64.count % 4 != 0 { base64 += "=" }
        return Base64.decode(base64)
    }
}

/// A business's or location's name as a person reads it on our pages: 1 to 80 characters
/// after trimming, any script, but no control characters and none of Unicode's direction
/// overrides or invisible joiners that could make one name read as another.
public enum DisplayName {
    public static let maxCharacters = 80

    /// The name if it may be shown, trimmed; nil when it is empty, too long or holds a
    /// character it must not.
    public static func checked(_ text: String) -> String? {
        let trimmed = text.trimmingSpaces()
        guard !trimmed.isEmpty, trimmed.count <= maxCharacters, trimmed.utf8.count <= 4 * maxCharacters else { return nil }
        for scalar in trimmed.unicodeScalars {
            switch scalar.value {
            case 0...0x1F, 0x7F...0x9F: return nil  // control characters
            case 0x200B...0x200F, 0x202A...0x202E, 0x2060...0x206F, 0xFEFF: return nil  // invisible and direction-changing
            default: continue
            }
        }
        return trimmed
    }
}

extension MessageLedger {
    /// Spends a signed state: its nonce is recorded until the state expires, so a state serves
    /// one callback or one signup. False when it was spent before.
    public func spend(_ state: OAuthState) async throws(KeyValueError) -> Bool {
        try await spendOnce("oauth-state:\(state.nonce)", businessId: state.businessId, expiresAt: state.expiresAt)
    }
}

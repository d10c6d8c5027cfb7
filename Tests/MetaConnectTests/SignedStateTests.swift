import MetaConnect
import Testing

/// The connect flows' own values, alone: the signed state a connect link carries (it must come
/// back unaltered, before it expires, under our secret) and the names shown to the person who
/// connects (none that could make one name read as another).
@Suite struct SignedStateTests {
    static let state = OAuthState(
        businessId: "B0100001", locationId: "L0100001", pageId: nil, redirectUri: "https://example.com/external/meta/callback", nonce: "n1",
        expiresAt: 1_000_600, businessName: "Salon Ana", locationName: "Cluj – centru")

    @Test func aStateComesBackOnlyAsItWasSignedAndBeforeItExpires() throws {
        let signed = Self.state.signed(secret: "state-secret")
        #expect(try OAuthState.verify(signed, secret: "state-secret", now: 1_000_000) == Self.state)

        func failure(_ text: String, secret: String = "state-secret", now: Int64 = 1_000_000) -> OAuthState.Failure? {
            do {
                _ = try OAuthState.verify(text, secret: secret, now: now)
                return nil
            } catch {
                return error
            }
        }
        #expect(failure(signed, now: 1_000_600) == .expired)
        #expect(failure(signed, secret: "another-secret") == .forged)
        let parts = signed.split(separator: ".").map(String.init)
        // Another business named in the same payload's place: the signature no longer holds.
        let other = OAuthState(
            businessId: "B0100002", locationId: "L0100001", pageId: nil, redirectUri: Self.state.redirectUri, nonce: "n1", expiresAt: 1_000_600)
        let otherPayload = other.signed(secret: "attacker").split(separator: ".")[0]
        #expect(failure("\(otherPayload).\(parts[1])") == .forged)
        // The signature's last character changed (base64's unused low bits included).
        var signature = Array(parts[1])
        signature[signature.count - 1] = signature[signature.count - 1] == "A" ? "B" : "A"
        #expect(failure("\(parts[0]).\(String(signature))") == .forged)
        #expect(failure("not a state") == .malformed)
        #expect(failure("") == .malformed)
    }

    @Test func aNameIsShownOnlyWhenItCannotReadAsAnother() {
        #expect(DisplayName.checked("  Salon Ana  ") == "Salon Ana")
        #expect(DisplayName.checked("Cluj – centru") == "Cluj – centru")
        #expect(DisplayName.checked(String(repeating: "ă", count: 80)) != nil)
        #expect(DisplayName.checked(String(repeating: "ă", count: 81)) == nil)
        #expect(DisplayName.checked("   ") == nil)
        #expect(DisplayName.checked("Salon\u{202E}anA") == nil)  // right-to-left override
        #expect(DisplayName.checked("Sa\u{200B}lon") == nil)  // zero-width space
        #expect(DisplayName.checked("Salon\nAna") == nil)
    }
}

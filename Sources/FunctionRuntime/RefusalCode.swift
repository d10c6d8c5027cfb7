/// Every `error` code an HTTP route of ours answers with (`{"error": code, "message"}`), one
/// type instead of strings at each refusal; `docs/functions.md` "Error codes" lists each one,
/// and `RefusalCodeTests` fails when the two differ.
public enum RefusalCode: String, Sendable, CaseIterable, Equatable {
    case alreadyConnected = "already_connected"
    case bodyTooLarge = "body_too_large"
    case codeExchangeFailed = "code_exchange_failed"
    case expiredSignedRequest = "expired_signed_request"
    case expiredState = "expired_state"
    case forbidden = "forbidden"
    case graphError = "graph_error"
    case instagramLoginNotConfigured = "instagram_login_not_configured"
    case invalidBusinessId = "invalid_business_id"
    case invalidDisplayName = "invalid_display_name"
    case invalidIds = "invalid_ids"
    case invalidJson = "invalid_json"
    case invalidLocation = "invalid_location"
    case invalidLocationId = "invalid_location_id"
    case invalidPageId = "invalid_page_id"
    case invalidPath = "invalid_path"
    case invalidPayload = "invalid_payload"
    case invalidRequest = "invalid_request"
    case invalidSetting = "invalid_setting"
    case invalidSignature = "invalid_signature"
    case invalidState = "invalid_state"
    case malformedSignature = "malformed_signature"
    case malformedSignedRequest = "malformed_signed_request"
    case methodNotAllowed = "method_not_allowed"
    case missingCode = "missing_code"
    case missingParameter = "missing_parameter"
    case missingSignature = "missing_signature"
    case missingSignedRequest = "missing_signed_request"
    case missingState = "missing_state"
    case noInstagramAccount = "no_instagram_account"
    case noWhatsapp = "no_whatsapp"
    case notConnected = "not_connected"
    case notFound = "not_found"
    case pageNotFound = "page_not_found"
    case payloadTooLarge = "payload_too_large"
    case permissionsDeclined = "permissions_declined"
    case phoneNotInWaba = "phone_not_in_waba"
    case redirectUriNotAllowed = "redirect_uri_not_allowed"
    case stateAlreadyUsed = "state_already_used"
    case storeUnavailable = "store_unavailable"
    case subscriptionFailed = "subscription_failed"
    case tamperedState = "tampered_state"
    case tokenExpired = "token_expired"
    case tokenInvalid = "token_invalid"
    case unsupportedAlgorithm = "unsupported_algorithm"
    case unsupportedMode = "unsupported_mode"
    case wabaNotGranted = "waba_not_granted"
    case wabaNotReachable = "waba_not_reachable"

    /// The code of a failure enum whose raw values are codes (a state's, a signature's), or
    /// `invalidRequest` for one that is not (a test holds every such value to this type).
    public init<Failure: RawRepresentable>(_ failure: Failure) where Failure.RawValue == String {
        self = RefusalCode(rawValue: failure.rawValue) ?? .invalidRequest
    }
}

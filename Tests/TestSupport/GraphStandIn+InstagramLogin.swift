import Foundation

/// The Instagram Login side of the Graph stand-in (Business Login for Instagram, Instagram
/// API with Instagram Login), following Meta's documented exchanges:
/// - `POST /oauth/access_token` (api.instagram.com), form `client_id`, `client_secret`,
///   `grant_type=authorization_code`, `redirect_uri`, `code` → `{"data": [{"access_token",
///   "user_id", "permissions"}]}`; an unknown code → `{"error_type": "OAuthException", "code":
///   400, "error_message": ...}`;
/// - `GET /access_token?grant_type=ig_exchange_token&client_secret&access_token` →
///   `{"access_token", "token_type": "bearer", "expires_in"}`;
/// - `GET /refresh_access_token?grant_type=ig_refresh_token&access_token` → the same, a new
///   token; an expired or unknown token → code 190;
/// - `GET /{v}/me?fields=user_id,username` → `{"user_id", "username", "id"}`;
/// - `POST /{v}/me/subscribed_apps?subscribed_fields=...` → `{"success": true}`;
/// - `POST /{v}/{ig-user-id}/messages` (and sender actions) with the account's own token.
/// Calls with these tokens must carry no `appsecret_proof` (graph.instagram.com takes none).
public struct InstagramLoginWorld: Sendable {
    public struct Account: Sendable {
        /// The person's Instagram-scoped id (the code exchange's `user_id`).
        public let userId: String
        /// The professional account's id: webhooks' `entry[].id`, `/me`'s `user_id`.
        public let accountId: String
        public let username: String
        public let shortToken: String
        public let longToken: String
        public var permissions = "instagram_business_basic,instagram_business_manage_messages"

        public init(userId: String, accountId: String, username: String, shortToken: String, longToken: String) {
            self.userId = userId
            self.accountId = accountId
            self.username = username
            self.shortToken = shortToken
            self.longToken = longToken
        }
    }

    public let appId: String
    public let appSecret: String
    public let redirectURI: String
    public var codes: [String: Account]
    /// Seconds a long-lived (or refreshed) token is good for.
    public var expiresIn: Int64 = 5_183_944

    public init(appId: String, appSecret: String, redirectURI: String, codes: [String: Account]) {
        self.appId = appId
        self.appSecret = appSecret
        self.redirectURI = redirectURI
        self.codes = codes
    }
}

extension GraphStandIn {
    /// Lets an Instagram-Login token speak for a professional account.
    public func allowInstagram(token: String, account: String) async { await state.allowInstagram(token: token, account: account) }

    public func configure(_ world: InstagramLoginWorld) async {
        for account in world.codes.values { await state.allowInstagram(token: account.longToken, account: account.accountId) }
        await state.addPreRoute { request, token, state in
            let parts = request.path.split(separator: "/").map(String.init)
            let query = request.query
            if request.method == "POST", parts == ["oauth", "access_token"] {
                let form = FormFields(request.body)
                guard form["client_id"] == world.appId, form["client_secret"] == world.appSecret else {
                    return .json(400, #"{"error_type":"OAuthException","code":400,"error_message":"Invalid platform app"}"#)
                }
                guard form["grant_type"] == "authorization_code", form["redirect_uri"] == world.redirectURI else {
                    return .json(
                        400,
                        #"{"error_type":"OAuthException","code":400,"error_message":"Error validating verification code. Please make sure your redirect_uri is identical to the one you used in the OAuth dialog request"}"#
                    )
                }
                guard let code = form["code"], let account = world.codes[code] else {
                    return .json(400, #"{"error_type":"OAuthException","code":400,"error_message":"Invalid authorization code"}"#)
                }
                return .json(
                    200, #"{"data":[{"access_token":"\#(account.shortToken)","user_id":"\#(account.userId)","permissions":"\#(account.permissions)"}]}"#)
            }
            if request.method == "GET", parts == ["access_token"] {
                guard query["grant_type"] == "ig_exchange_token", query["client_secret"] == world.appSecret,
                    let account = world.codes.values.first(where: { $0.shortToken == query["access_token"] })
                else {
                    return GraphStandIn.error(code: 190, message: "Invalid OAuth access token - Cannot parse access token")
                }
                return .json(200, #"{"access_token":"\#(account.longToken)","token_type":"bearer","expires_in":\#(world.expiresIn)}"#)
            }
            if request.method == "GET", parts == ["refresh_access_token"] {
                guard query["grant_type"] == "ig_refresh_token", let old = query["access_token"], let account = state.instagramTokens[old],
                    state.tokenInfo[old]?.isValid ?? true
                else {
                    return GraphStandIn.error(code: 190, subcode: 463, message: "Error validating access token: Session has expired.")
                }
                state.refreshCount += 1
                let fresh = "\(account)-refreshed-\(state.refreshCount)"
                state.allowInstagram(token: fresh, account: account)
                return .json(200, #"{"access_token":"\#(fresh)","token_type":"bearer","expires_in":\#(world.expiresIn)}"#)
            }
            guard let token, let account = state.instagramTokens[token] else { return nil }
            guard query["appsecret_proof"] == nil else {
                return GraphStandIn.error(code: 100, message: "appsecret_proof is not taken by graph.instagram.com in this stand-in")
            }
            if request.method == "GET", parts.count == 2, parts[1] == "me" {
                let username = world.codes.values.first { $0.accountId == account }?.username ?? "account"
                return .json(200, #"{"user_id":"\#(account)","username":"\#(username)","id":"\#(account)0"}"#)
            }
            if request.method == "POST", parts.count == 3, parts[1] == "me", parts[2] == "subscribed_apps" {
                guard let fields = query["subscribed_fields"], !fields.isEmpty else {
                    return GraphStandIn.error(code: 100, message: "(#100) The parameter subscribed_fields is required")
                }
                state.subscriptions[account] = fields.split(separator: ",").map(String.init)
                return .json(200, #"{"success":true}"#)
            }
            return nil
        }
    }
}

/// `application/x-www-form-urlencoded` fields of a body.
struct FormFields {
    let values: [String: String]

    init(_ body: [UInt8]) {
        var values: [String: String] = [:]
        for pair in String(decoding: body, as: UTF8.self).split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1).map { String($0).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? "" }
            if parts.count == 2 { values[parts[0]] = parts[1] }
        }
        self.values = values
    }

    subscript(name: String) -> String? { values[name] }
}

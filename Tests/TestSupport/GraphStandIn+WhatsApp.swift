import Foundation

/// WhatsApp Embedded Signup as a Tech Provider sees it (Meta for Developers, "Onboarding
/// business customers as a Tech Provider"):
/// - `GET /{v}/oauth/access_token?client_id&client_secret&code` (no redirect URI) →
///   `{"access_token": <business token>, "token_type": "bearer"}`;
/// - `debug_token` on the business token shows `granular_scopes` with the WABAs granted;
/// - `GET /{v}/{waba-id}/phone_numbers` → `{"data": [{"verified_name", "display_phone_number",
///   "id", "quality_rating"}], "paging": {"cursors": {"before", "after"}, "next"?}}`, a page of
///   `pageSize` (or `limit`) at a time from the `after` cursor, `next` only while more are left
///   (Graph API "Paginated Results", cursor-based); a WABA the token cannot reach: error 100,
///   subcode 33;
/// - `POST /{v}/{waba-id}/subscribed_apps` → `{"success": true}`;
/// - `POST /{v}/{phone-number-id}/register` with `{"messaging_product": "whatsapp", "pin"}`
///   (six digits) → `{"success": true}`.
public struct SignupWorld: Sendable {
    public struct Grant: Sendable {
        public let businessToken: String
        /// The WABAs the person granted `whatsapp_business_messaging` on.
        public let grantedWabas: [String]
        /// WABA id → its numbers (id, display number).
        public let numbers: [String: [(id: String, display: String)]]

        public init(businessToken: String, grantedWabas: [String], numbers: [String: [(id: String, display: String)]]) {
            self.businessToken = businessToken
            self.grantedWabas = grantedWabas
            self.numbers = numbers
        }
    }

    public let appId: String
    public var codes: [String: Grant]
    /// How many numbers a page of `phone_numbers` holds when the call sets no `limit` (Meta's
    /// default is 25; tests make it small to see the paging).
    public var pageSize: Int

    public init(appId: String, codes: [String: Grant], pageSize: Int = 25) {
        self.appId = appId
        self.codes = codes
        self.pageSize = pageSize
    }
}

extension GraphStandIn {
    public func configure(_ world: SignupWorld) async {
        let appSecret = self.appSecret
        let version = self.version
        for grant in world.codes.values {
            let phones = grant.numbers.values.flatMap { $0.map(\.id) }
            await allow(token: grant.businessToken, accounts: phones + Array(grant.numbers.keys))
            await describe(
                token: grant.businessToken,
                TokenInfo(
                    scopes: ["whatsapp_business_management", "whatsapp_business_messaging"], type: "SYSTEM_USER",
                    granularScopes: [
                        ("whatsapp_business_management", grant.grantedWabas), ("whatsapp_business_messaging", grant.grantedWabas),
                    ]))
        }
        await state.addRoute { request, token in
            let parts = request.path.split(separator: "/").map(String.init)
            let query = request.query
            if request.method == "GET", parts == [version, "oauth", "access_token"], query["redirect_uri"] == nil,
                let code = query["code"], let grant = world.codes[code]
            {
                guard query["client_id"] == world.appId, query["client_secret"] == appSecret else {
                    return GraphStandIn.error(code: 101, message: "Error validating application. Invalid application ID.")
                }
                return .json(200, #"{"access_token":"\#(grant.businessToken)","token_type":"bearer"}"#)
            }
            guard parts.count == 3, parts[0] == version, let token, let grant = world.codes.values.first(where: { $0.businessToken == token })
            else { return nil }
            let (object, edge) = (parts[1], parts[2])
            if request.method == "GET", edge == "phone_numbers" {
                guard grant.grantedWabas.contains(object), let numbers = grant.numbers[object] else {
                    return GraphStandIn.error(
                        code: 100, subcode: 33,
                        message:
                            "Unsupported get request. Object with ID '\(object)' does not exist, cannot be loaded due to missing permissions, or does not support this operation."
                    )
                }
                // Cursors are opaque to the caller; here, the index of the next number, in base64.
                let start = query["after"].flatMap { Data(base64Encoded: $0) }.flatMap { Int(String(decoding: $0, as: UTF8.self)) } ?? 0
                let size = max(1, query["limit"].flatMap { Int($0) } ?? world.pageSize)
                let page = numbers.dropFirst(start).prefix(size)
                let data = page.map {
                    #"{"verified_name":"Demo Bistro","display_phone_number":"\#($0.display)","id":"\#($0.id)","quality_rating":"GREEN"}"#
                }
                let cursor = { (index: Int) in Data(String(index).utf8).base64EncodedString() }
                let end = start + page.count
                let next =
                    end < numbers.count
                    ? #","next":"https://graph.facebook.com/\#(version)/\#(object)/phone_numbers?limit=\#(size)&after=\#(cursor(end))""# : ""
                return .json(
                    200,
                    #"{"data":[\#(data.joined(separator: ","))],"paging":{"cursors":{"before":"\#(cursor(start))","after":"\#(cursor(end))"}\#(next)}}"#)
            }
            if request.method == "POST", edge == "subscribed_apps", grant.numbers[object] != nil {
                guard grant.grantedWabas.contains(object) else {
                    return GraphStandIn.error(code: 200, message: "(#200) Permissions error")
                }
                return .json(200, #"{"success":true}"#)
            }
            if request.method == "POST", edge == "register", grant.numbers.values.contains(where: { $0.contains { $0.id == object } }) {
                let body = (try? JSONSerialization.jsonObject(with: Data(request.body))) as? [String: Any]
                guard body?["messaging_product"] as? String == "whatsapp" else {
                    return GraphStandIn.error(code: 100, message: "(#100) The parameter messaging_product is required.")
                }
                guard let pin = body?["pin"] as? String, pin.count == 6, pin.allSatisfy(\.isNumber) else {
                    return GraphStandIn.error(code: 100, message: "(#100) Param pin must be 6 characters long.")
                }
                return .json(200, #"{"success":true}"#)
            }
            return nil
        }
    }
}

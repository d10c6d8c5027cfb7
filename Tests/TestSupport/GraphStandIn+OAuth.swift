import Foundation

/// The Facebook Login side of the Graph stand-in, following Meta's documented exchanges:
/// - `GET /{v}/oauth/access_token?client_id&client_secret&redirect_uri&code` →
///   `{"access_token","token_type","expires_in"}` (an unknown code: error code 100);
/// - `GET /{v}/oauth/access_token?grant_type=fb_exchange_token&client_id&client_secret&fb_exchange_token`;
/// - `GET /{v}/me/accounts` with cursor pagination (`paging.cursors`, `paging.next`, whose URL
///   carries the user's `access_token` as Meta's does);
/// - `GET /{v}/{page-id}?fields=instagram_business_account{id,username}` (field expansion);
/// - `POST /{v}/{page-id}/subscribed_apps?subscribed_fields=...` → `{"success": true}`.
public struct OAuthWorld: Sendable {
    public struct Page: Sendable {
        public let id: String
        public let name: String
        public let token: String
        public let instagramAccountId: String?
        public let instagramUsername: String?

        public init(id: String, name: String, token: String, instagramAccountId: String?, instagramUsername: String? = nil) {
            self.id = id
            self.name = name
            self.token = token
            self.instagramAccountId = instagramAccountId
            self.instagramUsername = instagramUsername
        }
    }

    public let appId: String
    public let redirectURI: String
    /// Permissions the person declined in the dialog (`GET /me/permissions` says so).
    public var declined: [String] = []
    /// code → (short-lived user token, long-lived user token, the person's Pages)
    public var codes: [String: (short: String, long: String, pages: [Page])]
    public var pageSize: Int

    public init(appId: String, redirectURI: String, codes: [String: (short: String, long: String, pages: [Page])], pageSize: Int = 2) {
        self.appId = appId
        self.redirectURI = redirectURI
        self.codes = codes
        self.pageSize = pageSize
    }
}

extension OAuthWorld {
    /// The app-scoped id of the person a long-lived token belongs to (stable per token).
    public static func userId(for token: String) -> String {
        "1" + String(token.utf8.reduce(UInt64(14_695_981_039_346_656_037)) { ($0 ^ UInt64($1)) &* 1_099_511_628_211 } % 100_000_000_000_000)
    }
}

extension GraphStandIn {
    public func configure(_ world: OAuthWorld) async {
        let appSecret = self.appSecret
        let base = baseURL
        let version = self.version
        for (_, grant) in world.codes {
            await allow(token: grant.long, accounts: [])
            for page in grant.pages { await allow(token: page.token, accounts: [page.id]) }
        }
        await state.addRoute { request, token in
            let parts = request.path.split(separator: "/").map(String.init)
            let query = request.query
            if request.method == "GET", parts == [version, "oauth", "access_token"] {
                guard query["client_id"] == world.appId, query["client_secret"] == appSecret else {
                    return GraphStandIn.error(code: 101, message: "Error validating application. Invalid application ID.")
                }
                if query["grant_type"] == "fb_exchange_token" {
                    guard let grant = world.codes.values.first(where: { $0.short == query["fb_exchange_token"] }) else {
                        return GraphStandIn.error(code: 190, message: "Invalid OAuth access token - Cannot parse access token")
                    }
                    return .json(200, #"{"access_token":"\#(grant.long)","token_type":"bearer","expires_in":5183944}"#)
                }
                guard query["redirect_uri"] == world.redirectURI else {
                    return GraphStandIn.error(
                        code: 100, subcode: 36008,
                        message:
                            "Error validating verification code. Please make sure your redirect_uri is identical to the one you used in the OAuth dialog request"
                    )
                }
                guard let code = query["code"], let grant = world.codes[code] else {
                    return GraphStandIn.error(code: 100, subcode: 36009, message: "Invalid verification code format.")
                }
                return .json(200, #"{"access_token":"\#(grant.short)","token_type":"bearer","expires_in":5183}"#)
            }
            if request.method == "GET", parts == [version, "me"] || parts == [version, "me", "permissions"] {
                // The app-scoped user id Meta gives a person (Graph API "User"), and the
                // permissions they granted or declined (`{"data": [{"permission", "status"}]}`).
                guard let grant = world.codes.values.first(where: { $0.long == token }) else {
                    return GraphStandIn.error(code: 190, message: "Invalid OAuth access token - Cannot parse access token")
                }
                if parts.count == 2 {
                    return .json(200, #"{"id":"\#(OAuthWorld.userId(for: grant.long))","name":"Test Person"}"#)
                }
                let all = ["pages_show_list", "pages_messaging", "pages_manage_metadata", "instagram_basic", "instagram_manage_messages"]
                let data = all.map { #"{"permission":"\#($0)","status":"\#(world.declined.contains($0) ? "declined" : "granted")"}"# }
                return .json(200, #"{"data":[\#(data.joined(separator: ","))]}"#)
            }
            if request.method == "GET", parts == [version, "me", "accounts"] {
                guard let grant = world.codes.values.first(where: { $0.long == token }) else {
                    return GraphStandIn.error(code: 190, message: "Invalid OAuth access token - Cannot parse access token")
                }
                let start = Int(query["after"] ?? "0") ?? 0
                let slice = Array(grant.pages.dropFirst(start).prefix(world.pageSize))
                let data = slice.map {
                    #"{"id":"\#($0.id)","name":"\#($0.name)","access_token":"\#($0.token)","category":"Restaurant","tasks":["ADVERTISE","ANALYZE","CREATE_CONTENT","MESSAGING","MODERATE","MANAGE"]}"#
                }
                var paging = #""cursors":{"before":"\#(start)","after":"\#(start + slice.count)"}"#
                if start + slice.count < grant.pages.count {
                    paging += #","next":"\#(base)/\#(version)/me/accounts?access_token=\#(grant.long)&limit=\#(world.pageSize)&after=\#(start + slice.count)""#
                }
                return .json(200, #"{"data":[\#(data.joined(separator: ","))],"paging":{\#(paging)}}"#)
            }
            let known = world.codes.values.flatMap(\.pages)
            if parts.count == 2, parts[0] == version, request.method == "GET", known.contains(where: { $0.id == parts[1] }) {
                guard let page = known.first(where: { $0.id == parts[1] && $0.token == token }) else {
                    return GraphStandIn.error(code: 190, message: "Invalid OAuth access token")
                }
                if let instagram = page.instagramAccountId {
                    // Field expansion (`instagram_business_account{id,username}`) answers the
                    // fields asked for on the account.
                    let fields = request.query["fields"] ?? ""
                    let username = page.instagramUsername.map { fields.contains("username") ? #","username":"\#($0)""# : "" } ?? ""
                    return .json(200, #"{"instagram_business_account":{"id":"\#(instagram)"\#(username)},"id":"\#(page.id)"}"#)
                }
                return .json(200, #"{"id":"\#(page.id)"}"#)
            }
            if parts.count == 3, parts[0] == version, parts[2] == "subscribed_apps", request.method == "DELETE",
                known.contains(where: { $0.id == parts[1] && $0.token == token })
            {
                return .json(200, #"{"success":true}"#)
            }
            if parts.count == 3, parts[0] == version, parts[2] == "subscribed_apps", request.method == "POST",
                known.contains(where: { $0.id == parts[1] })
            {
                guard known.contains(where: { $0.id == parts[1] && $0.token == token }) else {
                    return GraphStandIn.error(code: 210, message: "(#210) A page access token is required to request this resource.")
                }
                guard query["subscribed_fields"]?.isEmpty == false else {
                    return GraphStandIn.error(code: 100, message: "(#100) The parameter subscribed_fields is required")
                }
                return .json(200, #"{"success":true}"#)
            }
            return nil
        }
    }
}

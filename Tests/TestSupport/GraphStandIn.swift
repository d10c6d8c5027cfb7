import Essentials
import Foundation

/// A loopback stand-in for Meta's Graph API that follows Meta's documented requests and
/// responses, and records what it was sent:
/// - `POST /{version}/{page-id}/messages` (Messenger Platform / Instagram Send API):
///   `{"recipient_id", "message_id"}`;
/// - `POST /{version}/{phone-number-id}/messages` (WhatsApp Cloud API):
///   `{"messaging_product", "contacts": [{"input", "wa_id"}], "messages": [{"id"}]}`;
/// - the OAuth and Page endpoints used by `oauth-callback`;
/// - `GET /{version}/debug_token?input_token=` with the app access token (`<app id>|<app
///   secret>`): `{"data": {"app_id", "type", "application", "expires_at", "is_valid",
///   "issued_at", "scopes", "data_access_expires_at", "error"?}}` (Graph API "Debug-Token");
/// - `GET /{version}/{page-id}/subscribed_apps`: `{"data": [{"category", "link", "name", "id",
///   "subscribed_fields"}]}`, kept up to date by the POST and DELETE on the same edge.
/// Every call must carry a known token (`Authorization: Bearer`) and the matching
/// `appsecret_proof`, or it gets Meta's error object (code 190, or 100 for a bad proof).
/// Failures can be scripted per path.
public final class GraphStandIn: Sendable {
    public struct Sent: Sendable {
        public let method: String
        public let path: String
        public let query: [String: String]
        public let token: String?
        public let rawBody: [UInt8]
        /// When the call arrived (for load scripts: when a reply reached "Meta").
        public var at: ContinuousClock.Instant = .now

        /// A POST on `.../messages` that carries a message (not a sender action or read receipt).
        public let isMessage: Bool

        public init(method: String, path: String, query: [String: String], token: String?, rawBody: [UInt8], body: [String: Any]?) {
            self.method = method
            self.path = path
            self.query = query
            self.token = token
            self.rawBody = rawBody
            isMessage = path.hasSuffix("/messages") && method == "POST" && body?["sender_action"] == nil && body?["status"] == nil
        }

        /// The JSON body, parsed on demand.
        public var body: [String: Any]? { Self.parse(rawBody) }

        static func parse(_ body: [UInt8]) -> [String: Any]? { (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any] }

        public var accountId: String { path.split(separator: "/").dropFirst().first.map(String.init) ?? "" }
    }

    public let server: LoopbackServer
    public let appSecret: String
    public let version: String
    let state: GraphState

    public var baseURL: String { server.baseURL }

    public init(appSecret: String = "local-app-secret", version: String = "v25.0") async throws {
        let state = GraphState()
        self.state = state
        self.appSecret = appSecret
        self.version = version
        server = try await LoopbackServer { request in
            let (response, answerAt) = await state.handle(request, appSecret: appSecret, version: version)
            if let answerAt { try? await Task.sleep(until: answerAt, clock: .continuous) }
            return response
        }
    }

    /// Every answer leaves this long after its request came (the round trip to Meta, in the
    /// benchmarks).
    public func setLatency(_ latency: Duration) async { await state.setLatency(latency) }

    /// Lets `token` act for these accounts (Page ids, phone number ids).
    public func allow(token: String, accounts: [String]) async { await state.allow(token: token, accounts: accounts) }

    /// The next calls whose path ends with `suffix` get these answers, in order; with
    /// `answerAt`, none of them is sent before that instant (a slow Graph API). Sender actions
    /// and read receipts (also on `.../messages`) take scripted answers only when
    /// `senderActions` says so, and then only they do.
    public func script(
        _ responses: [LoopbackServer.Response], pathSuffix: String, answerAt: ContinuousClock.Instant? = nil, senderActions: Bool = false
    ) async {
        await state.script(responses, pathSuffix: pathSuffix, answerAt: answerAt, senderActions: senderActions)
    }

    /// What `debug_token` says about `token` (a token never described is valid and never expires).
    public func describe(token: String, _ info: TokenInfo) async { await state.describe(token: token, info) }

    /// The fields this app is subscribed to on a Page (empty: not subscribed), as if a POST on
    /// `subscribed_apps` had been made.
    public func subscription(of page: String) async -> [String]? { await state.subscriptions[page] }
    public func subscribe(page: String, fields: [String]) async { await state.subscribe(page: page, fields: fields) }

    /// Every call received, in order.
    public var calls: [Sent] { get async { await state.calls } }

    /// The messages sent (calls to `.../messages` that carry a message, not a sender action
    /// or a WhatsApp read receipt).
    public var messages: [Sent] { get async { await state.calls.filter { $0.isMessage } } }

    /// The ids the stand-in gave the messages it accepted, in order.
    public var sentMessageIds: [String] { get async { await state.sentIds } }

    /// Sender actions (`mark_seen`, `typing_on`, `typing_off`) and WhatsApp read receipts, in order.
    public var senderActions: [Sent] {
        get async { await state.calls.filter { $0.path.hasSuffix("/messages") && $0.method == "POST" && !$0.isMessage } }
    }

    /// What `GET /{user-id}?fields=` answers for a customer (Messenger `first_name`,
    /// `last_name`; Instagram `name`, `username`); a customer never set is not found.
    public func setProfile(of customer: String, _ fields: [String: String]) async { await state.setProfile(customer, fields) }

    public func shutdown() async { await server.shutdown() }

    /// Holds every account to Meta's Send API limit (Messenger Platform "Rate Limits": 300
    /// calls a second per Page or Instagram professional account for text, links, reactions
    /// and stickers): a `POST /{account}/messages` (a message, a sender action, a read
    /// receipt) beyond `perSecond` in the last second is refused with code 613, "Calls to
    /// this api have exceeded the rate limit". Nil: no limit.
    public func limitSends(perSecond: Int?) async { await state.limitSends(perSecond: perSecond) }

    /// Per account: the most Send API calls it made within one second, and how many were
    /// refused for the limit.
    public var sendRates: [String: (most: Int, refused: Int)] { get async { await state.sendRates } }

    /// Meta's error object (Graph API "Handling Errors").
    public static func error(
        status: Int = 400, code: Int, subcode: Int? = nil, message: String, type: String = "OAuthException", transient: Bool = false
    ) -> LoopbackServer.Response {
        var error: [String: Any] = ["message": message, "type": type, "code": code, "fbtrace_id": "AbCdEfGh123"]
        if let subcode { error["error_subcode"] = subcode }
        if transient { error["is_transient"] = true }
        let body = (try? JSONSerialization.data(withJSONObject: ["error": error])) ?? Data()
        return LoopbackServer.Response(status: status, headers: [("Content-Type", "application/json")], body: Array(body))
    }
}

/// A token as Meta's token debugger describes it.
public struct TokenInfo: Sendable {
    public var isValid: Bool
    /// Epoch seconds; 0 means it never expires (a Page token from a long-lived user token).
    public var expiresAt: Int64
    public var scopes: [String]
    public var type: String
    /// `granular_scopes`: a permission and the assets (WABA ids) it is granted on.
    public var granularScopes: [(scope: String, targetIds: [String])] = []

    public init(
        isValid: Bool = true, expiresAt: Int64 = 0, scopes: [String] = TokenInfo.messagingScopes, type: String = "PAGE",
        granularScopes: [(scope: String, targetIds: [String])] = []
    ) {
        self.isValid = isValid
        self.expiresAt = expiresAt
        self.scopes = scopes
        self.type = type
        self.granularScopes = granularScopes
    }

    public static let messagingScopes = ["pages_show_list", "pages_messaging", "pages_manage_metadata", "instagram_basic", "instagram_manage_messages"]

    /// Expired at `epochSeconds`: what Meta answers for a token whose session has ended.
    public static func expired(at epochSeconds: Int64) -> TokenInfo {
        TokenInfo(isValid: false, expiresAt: epochSeconds)
    }
}

actor GraphState {
    var tokens: [String: Set<String>] = [:]
    var tokenInfo: [String: TokenInfo] = [:]
    var subscriptions: [String: [String]] = [:]
    var profiles: [String: [String: String]] = [:]
    var sentIds: [String] = []
    let appId = "100000000000001"

    func setProfile(_ customer: String, _ fields: [String: String]) { profiles[customer] = fields }
    /// Instagram-Login tokens and the professional account each speaks for.
    var instagramTokens: [String: String] = [:]
    var refreshCount = 0
    func allowInstagram(token: String, account: String) {
        instagramTokens[token] = account
        tokens[token, default: []].insert(account)
    }
    /// Routes answered before the version check (Instagram Login's unversioned endpoints).
    var preRoutes: [@Sendable (LoopbackServer.Request, String?, isolated GraphState) -> LoopbackServer.Response?] = []
    func addPreRoute(_ route: @escaping @Sendable (LoopbackServer.Request, String?, isolated GraphState) -> LoopbackServer.Response?) {
        preRoutes.append(route)
    }
    var latency: Duration = .zero
    func setLatency(_ value: Duration) { latency = value }

    var sendLimit: Int?
    var recentSends: [String: [ContinuousClock.Instant]] = [:]
    var sendRates: [String: (most: Int, refused: Int)] = [:]
    func limitSends(perSecond: Int?) { sendLimit = perSecond }

    /// A Send API call over the account's limit, refused; nil when it may go.
    private func overSendLimit(_ call: GraphStandIn.Sent) -> LoopbackServer.Response? {
        guard let limit = sendLimit, call.method == "POST", call.path.hasSuffix("/messages") else { return nil }
        let account = call.accountId
        let now = ContinuousClock.now
        var recent = recentSends[account, default: []]
        recent.removeAll { now - $0 >= .seconds(1) }
        var rate = sendRates[account] ?? (most: 0, refused: 0)
        guard recent.count < limit else {
            rate.refused += 1
            sendRates[account] = rate
            recentSends[account] = recent
            return GraphStandIn.error(code: 613, message: "(#613) Calls to this api have exceeded the rate limit.")
        }
        recent.append(now)
        rate.most = max(rate.most, recent.count)
        sendRates[account] = rate
        recentSends[account] = recent
        return nil
    }

    func describe(token: String, _ info: TokenInfo) { tokenInfo[token] = info }
    func subscribe(page: String, fields: [String]) { subscriptions[page] = fields }
    var scripted: [(suffix: String, responses: [LoopbackServer.Response], answerAt: ContinuousClock.Instant?, senderActions: Bool)] = []
    var calls: [GraphStandIn.Sent] = []
    var counter = 0
    /// Extra routes (OAuth, Pages) installed by the OAuth tests.
    var routes: [@Sendable (LoopbackServer.Request, String?) -> LoopbackServer.Response?] = []

    func allow(token: String, accounts: [String]) {
        tokens[token, default: []].formUnion(accounts)
    }

    func script(_ responses: [LoopbackServer.Response], pathSuffix: String, answerAt: ContinuousClock.Instant?, senderActions: Bool) {
        scripted.append((pathSuffix, responses, answerAt, senderActions))
    }

    func addRoute(_ route: @escaping @Sendable (LoopbackServer.Request, String?) -> LoopbackServer.Response?) {
        routes.append(route)
    }

    /// The answer to `request`, and the instant before which it must not be sent, if any.
    func handle(_ request: LoopbackServer.Request, appSecret: String, version: String) -> (LoopbackServer.Response, ContinuousClock.Instant?) {
        let (response, answerAt) = answerOrScript(request, appSecret: appSecret, version: version)
        guard latency > .zero else { return (response, answerAt) }
        let earliest = ContinuousClock.now + latency
        return (response, max(answerAt ?? earliest, earliest))
    }

    private func answerOrScript(_ request: LoopbackServer.Request, appSecret: String, version: String) -> (LoopbackServer.Response, ContinuousClock.Instant?) {
        let authorization = request.header("Authorization")
        let query = request.query
        let body = GraphStandIn.Sent.parse(request.body)
        let token = authorization.flatMap { $0.hasPrefix("Bearer ") ? String($0.dropFirst(7)) : nil } ?? query["access_token"]
        let call = GraphStandIn.Sent(method: request.method, path: request.path, query: query, token: token, rawBody: request.body, body: body)
        calls.append(call)
        if let refused = overSendLimit(call) { return (refused, nil) }
        let isSenderAction = call.path.hasSuffix("/messages") && call.method == "POST" && !call.isMessage
        if let index = scripted.firstIndex(where: {
            request.path.hasSuffix($0.suffix) && !$0.responses.isEmpty && $0.senderActions == isSenderAction
        }) {
            return (scripted[index].responses.removeFirst(), scripted[index].answerAt)
        }
        return (answer(request, query: query, body: body, token: token, appSecret: appSecret, version: version), nil)
    }

    /// Graph API "Debug-Token": the caller must use the app access token; an unknown input
    /// token is described as invalid (code 190) rather than refused.
    private func debugToken(_ request: LoopbackServer.Request, token: String?, appSecret: String) -> LoopbackServer.Response {
        guard let token, token == "\(appId)|\(appSecret)" else {
            return GraphStandIn.error(
                code: 100, message: "(#100) You must provide an app access token, or a user access token that is an owner or developer of the app")
        }
        guard let input = request.query["input_token"], !input.isEmpty else {
            return GraphStandIn.error(code: 100, message: "(#100) The parameter input_token is required")
        }
        guard tokens[input] != nil else {
            return .json(
                200, #"{"data":{"error":{"code":190,"message":"Invalid OAuth access token - Cannot parse access token"},"is_valid":false,"scopes":[]}}"#)
        }
        let info = tokenInfo[input] ?? TokenInfo()
        let scopes = info.scopes.map { #""\#($0)""# }.joined(separator: ",")
        let granular = info.granularScopes.map { entry in
            #"{"scope":"\#(entry.scope)","target_ids":[\#(entry.targetIds.map { #""\#($0)""# }.joined(separator: ","))]}"#
        }.joined(separator: ",")
        let error =
            info.isValid
            ? "" : #","error":{"code":190,"message":"Error validating access token: Session has expired on Thursday, 01-Jan-2026 00:00:00 PST.","subcode":463}"#
        return .json(
            200,
            #"{"data":{"app_id":"\#(appId)","type":"\#(info.type)","application":"Meta Messaging","data_access_expires_at":\#(WallClock.epochSeconds() + 90 * 24 * 3600),"expires_at":\#(info.expiresAt),"is_valid":\#(info.isValid),"issued_at":\#(WallClock.epochSeconds() - 24 * 3600),"scopes":[\#(scopes)],"granular_scopes":[\#(granular)],"user_id":"1234567890"\#(error)}}"#
        )
    }

    private func answer(
        _ request: LoopbackServer.Request, query: [String: String], body: [String: Any]?, token: String?, appSecret: String, version: String
    ) -> LoopbackServer.Response {
        for route in preRoutes {
            if let response = route(request, token, self) { return response }
        }
        guard request.path.hasPrefix("/\(version)/") else {
            return GraphStandIn.error(code: 2635, message: "Unsupported API version", type: "OAuthException")
        }
        if let token, instagramTokens[token] == nil {
            let expected = Hex.encode(HMACSHA256.authenticationCode(for: Array(token.utf8), key: Array(appSecret.utf8)))
            guard query["appsecret_proof"] == expected else {
                return GraphStandIn.error(code: 100, message: "Invalid appsecret_proof provided in the API argument", type: "GraphMethodException")
            }
        }
        let parts = request.path.split(separator: "/").map(String.init)
        if let info = token.flatMap({ tokenInfo[$0] }), !info.isValid {
            return GraphStandIn.error(
                code: 190, subcode: 463, message: "Error validating access token: Session has expired on Thursday, 01-Jan-2026 00:00:00 PST.")
        }
        for route in routes {
            if let response = route(request, token) {
                if parts.count == 3, parts[2] == "subscribed_apps", response.status == 200 {
                    if request.method == "POST" {
                        subscriptions[parts[1]] = (query["subscribed_fields"] ?? "").split(separator: ",").map(String.init)
                    } else if request.method == "DELETE" {
                        subscriptions[parts[1]] = nil
                    }
                }
                return response
            }
        }
        if request.method == "GET", parts == [version, "debug_token"] {
            return debugToken(request, token: token, appSecret: appSecret)
        }
        if request.method == "GET", parts.count == 3, parts[2] == "subscribed_apps" {
            guard let token, tokens[token]?.contains(parts[1]) == true else {
                return GraphStandIn.error(code: 190, message: "Invalid OAuth access token - Cannot parse access token")
            }
            let apps = subscriptions[parts[1]].map { fields in
                let list = fields.map { #""\#($0)""# }.joined(separator: ",")
                return
                    #"{"category":"Business","link":"https://example.com/","name":"Meta Messaging","id":"\#(appId)","subscribed_fields":[\#(list)]}"#
            }
            return .json(200, #"{"data":[\#(apps ?? "")]}"#)
        }
        if request.method == "POST", parts.count == 3, parts[2] == "messages" {
            guard let token, tokens[token] != nil else {
                return GraphStandIn.error(code: 190, message: "Invalid OAuth access token - Cannot parse access token")
            }
            guard tokens[token]?.contains(parts[1]) == true else {
                return GraphStandIn.error(code: 10, message: "(#10) Application does not have permission for this action", type: "OAuthException")
            }
            if body?["messaging_product"] as? String == "whatsapp", body?["status"] != nil {
                // Cloud API "Mark messages as read" / "Typing indicators".
                guard body?["status"] as? String == "read", let id = body?["message_id"] as? String, id.hasPrefix("wamid.") else {
                    return GraphStandIn.error(code: 100, message: "(#100) Invalid parameter", type: "OAuthException")
                }
                if let typing = body?["typing_indicator"], (typing as? [String: Any])?["type"] as? String != "text" {
                    return GraphStandIn.error(code: 100, message: "(#100) Invalid parameter typing_indicator", type: "OAuthException")
                }
                return .json(200, #"{"success":true}"#)
            }
            if let action = body?["sender_action"] as? String {
                // Messenger Platform / Instagram Messaging "Sender Actions".
                guard ["mark_seen", "typing_on", "typing_off"].contains(action),
                    let recipient = (body?["recipient"] as? [String: Any])?["id"] as? String, body?["message"] == nil
                else {
                    return GraphStandIn.error(code: 100, message: "(#100) Invalid sender action", type: "OAuthException")
                }
                return .json(200, #"{"recipient_id":"\#(recipient)"}"#)
            }
            counter += 1
            if body?["messaging_product"] as? String == "whatsapp" {
                let to = body?["to"] as? String ?? ""
                sentIds.append("wamid.SENT\(counter)")
                return .json(
                    200, #"{"messaging_product":"whatsapp","contacts":[{"input":"\#(to)","wa_id":"\#(to)"}],"messages":[{"id":"wamid.SENT\#(counter)"}]}"#)
            }
            guard let recipient = (body?["recipient"] as? [String: Any])?["id"] as? String, body?["message"] is [String: Any] else {
                return GraphStandIn.error(code: 100, message: "(#100) The parameter recipient is required", type: "OAuthException")
            }
            sentIds.append("m_SENT\(counter)")
            return .json(200, #"{"recipient_id":"\#(recipient)","message_id":"m_SENT\#(counter)"}"#)
        }
        if request.method == "GET", parts.count == 2, let profile = profiles[parts[1]] {
            guard let token, tokens[token] != nil else {
                return GraphStandIn.error(code: 190, message: "Invalid OAuth access token - Cannot parse access token")
            }
            var answer: [String: Any] = ["id": parts[1]]
            for field in (query["fields"] ?? "").split(separator: ",").map(String.init) {
                if let value = profile[field] { answer[field] = value }
            }
            let data = (try? JSONSerialization.data(withJSONObject: answer)) ?? Data()
            return LoopbackServer.Response(status: 200, headers: [("Content-Type", "application/json")], body: Array(data))
        }
        return GraphStandIn.error(code: 803, message: "(#803) Some of the aliases you requested do not exist", type: "OAuthException")
    }
}

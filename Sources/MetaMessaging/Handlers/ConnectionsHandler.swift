import Essentials
import FunctionRuntime
import KeyValueStore
import Logging
import MetaConnect
import MetaGraph
import MetaTelemetry
import MetaTenancy
import MetaWebhooks

/// A tenant's leaving, one function with four routes (one executable rather than four: they
/// share the directory, the Graph client and the signed-request check, and each is rare):
/// - `DELETE /external/meta/connections/{businessId}/{locationId}` (IAM-authorised, like
///   `POST /messages`): unsubscribes the app from the Page, releases the connection's
///   identifiers, deletes its token. Idempotent; a failed unsubscribe still removes our data
///   and says what it could not undo.
/// - `POST /external/meta/deauthorize` (Meta's Deauthorize Callback): every connection the
///   person made becomes inactive (`deauthorized`), its token deleted, its identifiers released.
/// - `POST /external/meta/data-deletion` (Meta's Data Deletion Request Callback): everything
///   held about the person is deleted; the answer is `{"url", "confirmation_code"}`.
/// - `GET /external/meta/data-deletion/status?code=`: a small page saying what was done.
/// - `GET /external/meta/connections?businessId=` (IAM-authorised): each connection's state as
///   we hold it and as Meta sees it (`debug_token`, the Page's `subscribed_apps`), and when a
///   webhook last arrived for each of its accounts.
public struct ConnectionsHandler: Sendable {
    /// The conversation log (`connection.removed`) and the metrics, after the answer.
    public var telemetry: Telemetry = .none
    public let directory: TenantDirectory
    public let ledger: MessageLedger
    public let graph: GraphClient
    public let appSecret: String
    /// For the app access token (`<app id>|<app secret>`) `debug_token` needs; without it the
    /// status says the token could not be checked.
    public let appId: String?
    /// Where the status page is reached (`PUBLIC_BASE_URL`); else the request's own host.
    public let publicBaseURL: String?
    public let clock: WallClock
    /// What a location's settings are checked against, and what stands where it set none.
    public var settingsRules = SettingsRules(allowsLoopback: false, hasDeploymentSecret: false, requiresSignedAgents: true, lambdaFunctions: [])
    public var settingsDefaults = SettingsDefaults()
    /// The Instagram app's secret (`INSTAGRAM_APP_SECRET`): Instagram signs the deauthorize and
    /// data-deletion requests of people who connected through Instagram Login with it.
    public var instagramAppSecret: String?
    /// Days the store's backups keep a deleted connection (`BACKUP_RETENTION_DAYS`: DynamoDB's
    /// point-in-time recovery of the connection tables); nil where none are kept (the file
    /// store, whose history is rewritten away at each deletion).
    public var backupRetentionDays: Int64?
    /// How long a deletion record (no personal data) is kept.
    public let deletionRecordSeconds: Int64 = 90 * 24 * 3600

    public init(
        directory: TenantDirectory, ledger: MessageLedger, graph: GraphClient, appSecret: String, appId: String? = nil,
        publicBaseURL: String? = nil, clock: WallClock = .system
    ) {
        self.appId = appId
        self.directory = directory
        self.ledger = ledger
        self.graph = graph
        self.appSecret = appSecret
        self.publicBaseURL = publicBaseURL.map { $0.hasSuffix("/") ? String($0.dropLast()) : $0 }
        self.clock = clock
    }

    public static let connectionsPrefix = "/external/meta/connections/"

    public func handle(_ request: HTTPRequest, logger: Logger, events: ConversationEvents? = nil) async throws(RequestRefused) -> HTTPResponse {
        switch (request.method, request.path) {
        case ("POST", "/external/meta/deauthorize"): return try await deauthorize(request, logger: logger, events: events)
        case ("POST", "/external/meta/data-deletion"): return try await deleteData(request, logger: logger)
        case ("GET", "/external/meta/data-deletion/status"): return try await deletionStatus(request)
        case ("GET", "/external/meta/connections"):
            guard let businessId = request.queryValue("businessId"), isValidIdentifier(businessId) else {
                throw RequestRefused(400, code: .invalidBusinessId, "businessId is required (letters, digits, '-', '_', '.', at most 128)")
            }
            return try await status(businessId: businessId, logger: logger)
        case ("GET", "/external/meta/whatsapp/templates"):
            return try await templates(request, logger: logger)
        case ("GET", let path) where path.hasPrefix(Self.messagesPrefix):
            return try await message(request, path: path)
        case ("GET", let path) where path.hasPrefix(Self.connectionsPrefix) && path.hasSuffix(Self.settingsSuffix):
            return try await settings(of: try Self.location(in: path, suffix: Self.settingsSuffix))
        case ("PUT", let path) where path.hasPrefix(Self.connectionsPrefix) && path.hasSuffix(Self.settingsSuffix):
            return try await setSettings(request, of: try Self.location(in: path, suffix: Self.settingsSuffix), logger: logger)
        case ("DELETE", let path) where path.hasPrefix(Self.connectionsPrefix):
            let parts = path.dropFirst(Self.connectionsPrefix.count).split(separator: "/", omittingEmptySubsequences: false)
            guard parts.count == 2, let businessId = Self.identifier(parts[0]), let locationId = Self.identifier(parts[1]) else {
                throw RequestRefused(400, code: .invalidPath, "the path must be /external/meta/connections/{businessId}/{locationId}")
            }
            let response = try await disconnect(Tenant(businessId: businessId, locationId: locationId), logger: logger)
            if response.body.contains(#""status":"disconnected""#) {
                events?.add(ConversationEvent(.connectionRemoved, businessId: businessId, locationId: locationId, reason: "disconnected"))
            }
            return response
        default:
            throw RequestRefused(404, code: .notFound, "no such route")
        }
    }

    static let settingsSuffix = "/settings"

    /// The location a `/external/meta/connections/{businessId}/{locationId}<suffix>` path names.
    static func location(in path: String, suffix: String) throws(RequestRefused) -> Tenant {
        let parts = path.dropFirst(connectionsPrefix.count).dropLast(suffix.count).split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let businessId = identifier(parts[0]), let locationId = identifier(parts[1]) else {
            throw RequestRefused(400, code: .invalidPath, "the path must be /external/meta/connections/{businessId}/{locationId}\(suffix)")
        }
        return Tenant(businessId: businessId, locationId: locationId)
    }

    /// A percent-decoded path segment, if it is an id as auth-url accepts them.
    static func identifier(_ part: Substring) -> String? {
        let text = FormEncoding.decode(part, plusIsSpace: false)
        return isValidIdentifier(text) ? text : nil
    }

    // MARK: Disconnect

    struct Disconnected: Encodable {
        let status: String
        let businessId: String
        let locationId: String
        var releasedIdentifiers: [String] = []
        var unsubscribed: Bool? = nil
        /// What could not be undone at Meta (our data is removed all the same).
        var notUndone: [String] = []
    }

    func disconnect(_ tenant: Tenant, logger: Logger) async throws(RequestRefused) -> HTTPResponse {
        let removal: TenantDirectory.Removal?
        do {
            removal = try await directory.disconnect(tenant)
            try await directory.forgetHistory()
        } catch {
            throw RequestRefused(503, code: .storeUnavailable, "the connection could not be removed: \(error.code.rawValue)")
        }
        guard let removal else {
            return .json(200, Disconnected(status: "not_connected", businessId: tenant.businessId, locationId: tenant.locationId))
        }
        var answer = Disconnected(
            status: "disconnected", businessId: tenant.businessId, locationId: tenant.locationId, releasedIdentifiers: removal.releasedIdentifiers)
        if removal.connection.usesInstagramLogin, let account = removal.connection.instagramAccountId {
            // Meta documents no call that undoes an Instagram-Login account's subscription or
            // token: both stay until the token expires or the account removes the app.
            answer.notUndone.append(
                "the Instagram account \(account) stays subscribed to this app's webhooks, and its token valid until it expires, "
                    + "unless its owner removes the app (Instagram: Settings, Apps and websites): Meta documents no call to undo either; "
                    + "its webhooks are acknowledged and left")
        } else if let page = removal.connection.pageId, removal.connection.isActive {
            do {
                let result = try await graph.call("DELETE", "\(page)/subscribed_apps", token: removal.connection.accessToken, timeout: .seconds(8))
                answer.unsubscribed = result["success"]?.bool == true
                if answer.unsubscribed != true { answer.notUndone.append("the Page \(page) may still be subscribed to this app's webhooks") }
            } catch {
                logger.warning("could not unsubscribe the Page", metadata: ["pageId": "\(page)", "detail": "\(error)"])
                answer.unsubscribed = false
                answer.notUndone.append(
                    "the Page \(page) may still be subscribed to this app's webhooks (the Graph API refused: fbtrace_id \(error.fbtraceId ?? "none"))")
            }
        }
        logger.info("connection removed", metadata: ["businessId": "\(tenant.businessId)", "locationId": "\(tenant.locationId)"])
        return .json(200, answer)
    }

    // MARK: Connection status

    struct Status: Encodable {
        let businessId: String
        let connections: [ConnectionStatus]
    }

    struct ConnectionStatus: Encodable {
        /// nil for an item of the single-connection shape that names no location.
        let locationId: String?
        let active: Bool
        let inactiveReason: String?
        let connectedAt: String?
        /// The app-scoped id of the person who connected it (`GET /me` at the callback).
        let connectedBy: String?
        let createdAt: String?
        let updatedAt: String?
        let accounts: [Account]
        let token: TokenStatus
        /// The WhatsApp number's own token, when it has one.
        let whatsappToken: TokenStatus?
        let wabaId: String?
        /// nil when the connection has no Page (a WhatsApp number alone).
        let webhooks: SubscriptionStatus?
        /// What to do about it, in a sentence; nil when nothing is wrong.
        let problem: String?
        /// The agent and rules in force for the location, and which come from the deployment.
        var settings: SettingsView? = nil
        /// Whether the location's comments can be answered as it chose (nil: `commentReplies` off).
        var comments: CommentReadiness? = nil
        /// The WhatsApp Business Account's health as Meta's webhooks told it.
        var whatsappHealth: HealthView? = nil
    }

    struct HealthView: Encodable {
        let qualityEvent: String?
        let messagingLimit: String?
        let qualityAt: String?
        let accountEvent: String?
        /// Templates that cannot be sent now, `name|language` → status.
        let templatesNotUsable: [String: String]
        /// What to do, when something needs it.
        let advice: String?

        init(_ health: WhatsAppHealth) {
            qualityEvent = health.qualityEvent
            messagingLimit = health.messagingLimit
            qualityAt = health.qualityAt.map { ISO8601.format(epochSeconds: $0) }
            accountEvent = health.accountEvent
            templatesNotUsable = health.notUsable
            advice = health.advice
        }
    }

    struct CommentReadiness: Encodable {
        let replies: LocationSettings.CommentReplies
        /// Permissions the token lacks for them (nil: not known, e.g. Instagram Login).
        var missingScopes: [String]? = nil
        /// Whether the Page's subscription has `feed` (Facebook comments).
        var feedSubscribed: Bool? = nil
    }

    /// What answering comments needs of a Facebook-Login token, by the location's choice.
    static func commentScopes(_ mode: LocationSettings.CommentReplies, instagram: Bool) -> [String] {
        guard mode != .off else { return [] }
        var scopes = ["pages_read_engagement"]
        if instagram { scopes.append("instagram_manage_comments") }
        if mode == .privateAndPublic { scopes.append("pages_manage_engagement") }
        return scopes
    }

    struct Account: Encodable {
        let id: String
        let type: String
        /// When a webhook last arrived for it (ISO 8601, UTC); nil: none since tracking began.
        let lastWebhookAt: String?
        /// The last message Meta said it could not deliver from it (WhatsApp statuses).
        let lastDeliveryFailure: TenantDirectory.DeliveryFailure?
    }

    struct TokenStatus: Encodable {
        /// Whether Meta could be asked (`debug_token`); when false, `detail` says why.
        var checked = false
        var valid: Bool? = nil
        /// ISO 8601, or "never" (a Page token from a long-lived user token does not expire).
        var expiresAt: String? = nil
        var dataAccessExpiresAt: String? = nil
        var scopes: [String]? = nil
        /// Messaging permissions the token lacks.
        var missingScopes: [String]? = nil
        var detail: String? = nil
    }

    struct SubscriptionStatus: Encodable {
        var checked = false
        /// Whether the Page's `subscribed_apps` lists this app with the `messages` field.
        var subscribed: Bool? = nil
        var fields: [String]? = nil
        var detail: String? = nil
    }

    /// What a connection's token needs to answer on Messenger and Instagram.
    static let messagingScopes = ["pages_messaging", "instagram_manage_messages"]

    func status(businessId: String, logger: Logger) async throws(RequestRefused) -> HTTPResponse {
        let records: [ConnectionRecord]
        let seen: [String: TenantDirectory.AccountActivity]
        do {
            records = try await directory.connectionRecords(businessId: businessId)
            seen = try await directory.activity(of: records.flatMap(\.identifiers))
        } catch {
            throw RequestRefused(503, code: .storeUnavailable, "the connections could not be read: \(error.code.rawValue)")
        }
        var connections: [ConnectionStatus] = []
        for record in records {
            connections.append(await status(of: record, seen: seen, logger: logger))
        }
        return .json(200, Status(businessId: businessId, connections: connections))
    }

    func status(of record: ConnectionRecord, seen: [String: TenantDirectory.AccountActivity], logger: Logger) async -> ConnectionStatus {
        func account(_ id: String?, _ type: String) -> Account? {
            id.map {
                Account(
                    id: $0, type: type, lastWebhookAt: seen[$0]?.lastWebhookAt.map { ISO8601.format(epochSeconds: $0) },
                    lastDeliveryFailure: seen[$0]?.lastDeliveryFailure)
            }
        }
        let accounts = [
            account(record.pageId, "page"),
            account(record.instagramAccountId, record.usesInstagramLogin ? "instagram_account (Instagram Login)" : "instagram_account"),
            account(record.phoneNumberId, "whatsapp_phone_number"),
        ].compactMap { $0 }
        var token = TokenStatus()
        var webhooks: SubscriptionStatus? = record.pageId == nil ? nil : SubscriptionStatus()
        var whatsappToken: TokenStatus? = nil
        if let whatsapp = record.whatsappAccessToken, !whatsapp.isEmpty {
            whatsappToken = await inspect(whatsapp, logger: logger)
        }
        if record.usesInstagramLogin {
            // Meta's debug_token does not describe Instagram-Login tokens: what we know of it is
            // its expiry, kept fresh by `refresh`.
            let now = WallClock.epochSeconds()
            token.checked = false
            token.valid = record.isActive && (record.tokenExpiresAt ?? 0) > now
            token.expiresAt = record.tokenExpiresAt.map { ISO8601.format(epochSeconds: $0) }
            token.detail = "an Instagram-Login token: its stored expiry (refreshed daily when within 10 days of it)"
        } else if let accessToken = record.accessToken, !accessToken.isEmpty {
            token = await inspect(accessToken, logger: logger)
            if let page = record.pageId { webhooks = await subscription(of: page, token: accessToken, logger: logger) }
        } else if whatsappToken != nil {
            token.detail = "no Page token: this connection has a WhatsApp number only"
        } else {
            token.detail = "no token is held for this connection"
            webhooks?.detail = "not checked: no token is held for this connection"
        }
        var problem: String? = nil
        if !record.isActive {
            problem = "inactive (\(record.inactiveReason ?? "no reason recorded")): the business must connect this location again"
        } else if token.valid == false {
            problem = "the token is no longer valid: the business must connect this location again"
        } else if whatsappToken?.valid == false {
            problem = "the WhatsApp token is no longer valid: the business must connect WhatsApp again"
        } else if record.pageId != nil, let missing = token.missingScopes, !missing.isEmpty {
            problem = "the token lacks \(missing.joined(separator: ", ")): connect again and grant every permission asked"
        } else if webhooks?.subscribed == false {
            problem = "the Page is not subscribed to this app's messages webhooks: connect this location again"
        }
        var health: WhatsAppHealth? = nil
        if let waba = record.wabaId { health = try? await directory.whatsAppHealth(waba) }
        if problem == nil, let advice = health?.advice { problem = advice }
        let mode = settingsDefaults.resolve(record.settings).commentReplies
        var comments: CommentReadiness? = nil
        if mode != .off {
            var readiness = CommentReadiness(replies: mode)
            if !record.usesInstagramLogin, let scopes = token.scopes {
                readiness.missingScopes = Self.commentScopes(mode, instagram: record.instagramAccountId != nil).filter { !scopes.contains($0) }
            }
            if let fields = webhooks?.fields { readiness.feedSubscribed = fields.contains("feed") }
            if problem == nil, let missing = readiness.missingScopes, !missing.isEmpty {
                problem = "comment replies are on (\(mode.rawValue)) but the token lacks \(missing.joined(separator: ", ")): connect again and grant them"
            } else if problem == nil, readiness.feedSubscribed == false {
                problem = "comment replies are on (\(mode.rawValue)) but the Page is not subscribed to feed: connect this location again"
            }
            comments = readiness
        }
        return ConnectionStatus(
            locationId: record.locationId, active: record.isActive, inactiveReason: record.inactiveReason, connectedAt: record.connectedAt,
            connectedBy: record.connectedBy, createdAt: record.createdAt, updatedAt: record.updatedAt, accounts: accounts, token: token,
            whatsappToken: whatsappToken, wabaId: record.wabaId, webhooks: webhooks, problem: problem,
            settings: SettingsView(record.settings, defaults: settingsDefaults), comments: comments, whatsappHealth: health.map(HealthView.init))
    }

    /// Why a check could not be made: Meta's code (or what failed) and fbtrace_id, never its
    /// free text.
    static func notChecked(_ error: GraphError) -> String {
        "not checked: the Graph API refused (\(error.code.map { "code \($0)" } ?? error.kind.rawValue), fbtrace_id \(error.fbtraceId ?? "none"))"
    }

    /// `GET /debug_token?input_token=` with the app access token.
    func inspect(_ accessToken: String, logger: Logger) async -> TokenStatus {
        var status = TokenStatus()
        guard let appId else {
            status.detail = "not checked: META_APP_ID is not configured"
            return status
        }
        let answer: JSON
        do {
            answer = try await graph.call(
                "GET", "debug_token", query: [("input_token", accessToken)], token: "\(appId)|\(appSecret)", timeout: .seconds(5))
        } catch {
            logger.warning("debug_token failed", metadata: ["detail": "\(error)"])
            status.detail = Self.notChecked(error)
            return status
        }
        guard let data = answer["data"], data.object != nil else {
            status.detail = "not checked: the Graph API answered without data"
            return status
        }
        status.checked = true
        status.valid = data["is_valid"]?.bool ?? false
        if let expires = data["expires_at"]?.int64 {
            status.expiresAt = expires == 0 ? "never" : ISO8601.format(epochSeconds: expires)
        }
        if let expires = data["data_access_expires_at"]?.int64, expires > 0 {
            status.dataAccessExpiresAt = ISO8601.format(epochSeconds: expires)
        }
        let scopes = data["scopes"]?.array?.compactMap(\.string) ?? []
        status.scopes = scopes
        status.missingScopes = Self.messagingScopes.filter { !scopes.contains($0) }
        if let error = data["error"], let message = error["message"]?.string {
            status.detail = "Meta says: \(message)"
        }
        return status
    }

    /// `GET /{page-id}/subscribed_apps` with the Page token: is our app there with `messages`?
    func subscription(of page: String, token: String, logger: Logger) async -> SubscriptionStatus {
        var status = SubscriptionStatus()
        guard let appId else {
            status.detail = "not checked: META_APP_ID is not configured"
            return status
        }
        let answer: JSON
        do {
            answer = try await graph.call("GET", "\(page)/subscribed_apps", token: token, timeout: .seconds(5))
        } catch {
            logger.warning("subscribed_apps failed", metadata: ["pageId": "\(page)", "detail": "\(error)"])
            status.detail = Self.notChecked(error)
            return status
        }
        guard let apps = answer["data"]?.array else {
            status.detail = "not checked: the Graph API answered without data"
            return status
        }
        status.checked = true
        let ours = apps.first { $0["id"]?.string == appId }
        let fields = ours?["subscribed_fields"]?.array?.compactMap(\.string) ?? []
        status.fields = fields
        status.subscribed = fields.contains("messages")
        return status
    }

    // MARK: Meta's callbacks

    /// The person a `signed_request` is about, as our records name them: the app-scoped user
    /// id when Meta signed it with the app's secret (Facebook Login, WhatsApp signup),
    /// `instagram:<id>` when Instagram signed it with the Instagram app's (Instagram Login).
    func signedRequest(_ request: HTTPRequest) throws(RequestRefused) -> String {
        let form = QueryString.parse(String(decoding: request.body.prefix(16 * 1024), as: UTF8.self))
        guard request.body.count <= 16 * 1024, let text = form["signed_request"]?.first else {
            throw RequestRefused(400, code: .missingSignedRequest, "the form must carry signed_request")
        }
        let now = clock.epochSeconds()
        do {
            return try SignedRequest.verify(text, appSecret: appSecret, now: now).userId
        } catch {
            if error == .forged, let instagramAppSecret, !instagramAppSecret.isEmpty,
                let instagram = try? SignedRequest.verify(text, appSecret: instagramAppSecret, now: now)
            {
                return "instagram:\(instagram.userId)"
            }
            throw RequestRefused(400, code: RefusalCode(error), "the signed_request is not Meta's for this app, or has expired")
        }
    }

    func deauthorize(_ request: HTTPRequest, logger: Logger, events: ConversationEvents? = nil) async throws(RequestRefused) -> HTTPResponse {
        let person = try signedRequest(request)
        var count = 0
        do {
            for tenant in try await directory.connectionsMade(by: person) {
                _ = try await directory.deactivate(tenant, reason: "deauthorized")
                events?.add(ConversationEvent(.connectionRemoved, businessId: tenant.businessId, locationId: tenant.locationId, reason: "deauthorized"))
                count += 1
            }
            // The person left the app: nothing of ours names them any more.
            try await directory.forgetConnector(person)
            try await directory.forgetHistory()
        } catch {
            throw RequestRefused(503, code: .storeUnavailable, "the deauthorization could not be recorded: \(error.code.rawValue)")
        }
        logger.info("app deauthorized by a person", metadata: ["connections": "\(count)"])
        return .json(200, ["status": "deauthorized", "connections": "\(count)"])
    }

    func deleteData(_ request: HTTPRequest, logger: Logger) async throws(RequestRefused) -> HTTPResponse {
        let person = try signedRequest(request)
        let code = OAuthState.randomNonce()
        var deleted = 0
        do {
            for tenant in try await directory.connectionsMade(by: person) where try await directory.disconnect(tenant) != nil {
                deleted += 1
            }
            try await directory.forgetConnector(person)
            try await directory.forgetHistory()
            let now = clock.epochSeconds()
            // The record says what was done, never who asked: no user id, no business.
            try await ledger.store.put(
                ledger.table,
                item: [
                    "messageId": .s("data-deletion:\(code)"), "status": .s("deleted"), "receivedAt": .s(ISO8601.format(epochSeconds: now)),
                    "connectionsDeleted": .number(deleted), "expiresAt": .number(now + deletionRecordSeconds),
                ], condition: .itemAbsent)
        } catch {
            throw RequestRefused(503, code: .storeUnavailable, "the deletion could not be completed: \(error.code.rawValue)")
        }
        let base = publicBaseURL ?? "https://\(request.headers["host"] ?? "localhost")"
        logger.info("data deleted at a person's request", metadata: ["connections": "\(deleted)"])
        return .json(200, ["url": "\(base)/external/meta/data-deletion/status?code=\(code)", "confirmation_code": code])
    }

    func deletionStatus(_ request: HTTPRequest) async throws(RequestRefused) -> HTTPResponse {
        guard let code = request.queryValue("code"), code.utf8.count == 32, code.utf8.allSatisfy({ Hex.digitValue($0) != nil }) else {
            return Self.page(404, title: "Unknown request", "This confirmation code is not one of ours.")
        }
        let record: Item?
        do {
            record = try await ledger.store.get(ledger.table, key: ["messageId": .s("data-deletion:\(code)")])
        } catch {
            throw RequestRefused(503, code: .storeUnavailable, "the request could not be looked up")
        }
        guard let record else {
            return Self.page(404, title: "Unknown request", "This confirmation code is not one of ours, or its record has expired.")
        }
        let received = record["receivedAt"]?.string ?? "an unknown time"
        let count = record["connectionsDeleted"]?.int ?? 0
        return Self.page(
            200, title: "Your data was deleted",
            "We received your deletion request at \(received) (UTC). We deleted every connection you made (\(count)), with its access token and the accounts it linked. Status: done. "
                + Self.backups(backupRetentionDays))
    }

    /// What is kept after a deletion, said as it is.
    static func backups(_ days: Int64?) -> String {
        guard let days else { return "Nothing about you is left with us: no copy or history of it is kept." }
        return
            "Our cloud provider keeps backups of these records for disaster recovery for \(days) day\(days == 1 ? "" : "s"); nobody reads them in normal operation, and after that time your data is gone from them too. Nothing else about you is left with us."
    }

    static func page(_ status: Int, title: String, _ text: String) -> HTTPResponse {
        func escape(_ value: String) -> String {
            value.replacing("&", with: "&amp;").replacing("<", with: "&lt;").replacing(">", with: "&gt;")
        }
        let body = """
            <!doctype html>
            <html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
            <title>\(escape(title))</title></head>
            <body><main><h1>\(escape(title))</h1><p>\(escape(text))</p></main></body></html>
            """
        // The connect page's security headers: no script, style, frame or form of anyone's.
        return HTTPResponse(
            status: status,
            headers: [
                "Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store",
                "Content-Security-Policy": "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
                "Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff",
            ], body: body)
    }

    public var function: HTTPFunction {
        HTTPFunction { request, context in
            try await self.handle(request, logger: context.logger, events: self.telemetry.events(for: context))
        }
    }
}

import Essentials
import FunctionRuntime
import KeyValueStore
import Logging

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
public struct ConnectionsHandler: Sendable {
    public let directory: TenantDirectory
    public let ledger: MessageLedger
    public let graph: GraphClient
    public let appSecret: String
    /// Where the status page is reached (`PUBLIC_BASE_URL`); else the request's own host.
    public let publicBaseURL: String?
    public let clock: WallClock
    /// How long a deletion record (no personal data) is kept.
    public let deletionRecordSeconds: Int64 = 90 * 24 * 3600

    public init(
        directory: TenantDirectory, ledger: MessageLedger, graph: GraphClient, appSecret: String, publicBaseURL: String? = nil,
        clock: WallClock = .system
    ) {
        self.directory = directory
        self.ledger = ledger
        self.graph = graph
        self.appSecret = appSecret
        self.publicBaseURL = publicBaseURL.map { $0.hasSuffix("/") ? String($0.dropLast()) : $0 }
        self.clock = clock
    }

    public static let connectionsPrefix = "/external/meta/connections/"

    public func handle(_ request: HTTPRequest, logger: Logger) async throws(RequestRefused) -> HTTPResponse {
        switch (request.method, request.path) {
        case ("POST", "/external/meta/deauthorize"): return try await deauthorize(request, logger: logger)
        case ("POST", "/external/meta/data-deletion"): return try await deleteData(request, logger: logger)
        case ("GET", "/external/meta/data-deletion/status"): return try await deletionStatus(request)
        case ("DELETE", let path) where path.hasPrefix(Self.connectionsPrefix):
            let parts = path.dropFirst(Self.connectionsPrefix.count).split(separator: "/", omittingEmptySubsequences: false)
            guard parts.count == 2, let businessId = Self.identifier(parts[0]), let locationId = Self.identifier(parts[1]) else {
                throw RequestRefused(400, code: "invalid_path", "the path must be /external/meta/connections/{businessId}/{locationId}")
            }
            return try await disconnect(Tenant(businessId: businessId, locationId: locationId), logger: logger)
        default:
            throw RequestRefused(404, code: "not_found", "no such route")
        }
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
        } catch {
            throw RequestRefused(503, code: "store_unavailable", "the connection could not be removed: \(error.code.rawValue)")
        }
        guard let removal else {
            return .json(200, Disconnected(status: "not_connected", businessId: tenant.businessId, locationId: tenant.locationId))
        }
        var answer = Disconnected(
            status: "disconnected", businessId: tenant.businessId, locationId: tenant.locationId, releasedIdentifiers: removal.releasedIdentifiers)
        if let page = removal.connection.pageId, removal.connection.isActive {
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

    // MARK: Meta's callbacks

    func signedRequest(_ request: HTTPRequest) throws(RequestRefused) -> SignedRequest {
        let form = QueryString.parse(String(decoding: request.body.prefix(16 * 1024), as: UTF8.self))
        guard request.body.count <= 16 * 1024, let text = form["signed_request"]?.first else {
            throw RequestRefused(400, code: "missing_signed_request", "the form must carry signed_request")
        }
        do {
            return try SignedRequest.verify(text, appSecret: appSecret, now: clock.epochSeconds())
        } catch {
            throw RequestRefused(400, code: error.rawValue, "the signed_request is not Meta's for this app, or has expired")
        }
    }

    func deauthorize(_ request: HTTPRequest, logger: Logger) async throws(RequestRefused) -> HTTPResponse {
        let signed = try signedRequest(request)
        var count = 0
        do {
            for tenant in try await directory.connectionsMade(by: signed.userId) {
                _ = try await directory.deactivate(tenant, reason: "deauthorized")
                count += 1
            }
        } catch {
            throw RequestRefused(503, code: "store_unavailable", "the deauthorization could not be recorded: \(error.code.rawValue)")
        }
        logger.info("app deauthorized by a person", metadata: ["connections": "\(count)"])
        return .json(200, ["status": "deauthorized", "connections": "\(count)"])
    }

    func deleteData(_ request: HTTPRequest, logger: Logger) async throws(RequestRefused) -> HTTPResponse {
        let signed = try signedRequest(request)
        let code = OAuthState.randomNonce()
        var deleted = 0
        do {
            for tenant in try await directory.connectionsMade(by: signed.userId) where try await directory.disconnect(tenant) != nil {
                deleted += 1
            }
            try await directory.forgetConnector(signed.userId)
            let now = clock.epochSeconds()
            // The record says what was done, never who asked: no user id, no business.
            try await ledger.store.put(
                ledger.table,
                item: [
                    "messageId": .s("data-deletion:\(code)"), "status": .s("deleted"), "receivedAt": .s(ISO8601.format(epochSeconds: now)),
                    "connectionsDeleted": .number(deleted), "expiresAt": .number(now + deletionRecordSeconds),
                ], condition: .itemAbsent)
        } catch {
            throw RequestRefused(503, code: "store_unavailable", "the deletion could not be completed: \(error.code.rawValue)")
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
            throw RequestRefused(503, code: "store_unavailable", "the request could not be looked up")
        }
        guard let record else {
            return Self.page(404, title: "Unknown request", "This confirmation code is not one of ours, or its record has expired.")
        }
        let received = record["receivedAt"]?.string ?? "an unknown time"
        let count = record["connectionsDeleted"]?.int ?? 0
        return Self.page(
            200, title: "Your data was deleted",
            "We received your deletion request at \(received) (UTC). We deleted every connection you made (\(count)), with its access token and the accounts it linked. Nothing about you is left with us. Status: done."
        )
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
        return HTTPResponse(status: status, headers: ["Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store"], body: body)
    }

    public var function: HTTPFunction {
        HTTPFunction { request, context in try await self.handle(request, logger: context.logger) }
    }
}

import FunctionRuntime
import HTTPTransport
import KeyValueStore
import Logging
import MetaConnect
import MetaGraph
import MetaTelemetry
import MetaTenancy
import MetaWebhooks

/// `refresh`: keeps Instagram-Login tokens alive (they last 60 days). Run daily by an
/// EventBridge schedule (and by `serve` on a timer). Every active Instagram-Login connection
/// whose token is at least 24 hours old and expires within `window` is refreshed
/// (`GET /refresh_access_token?grant_type=ig_refresh_token`); one Meta calls expired or
/// revoked (code 190), or already past its expiry, is marked inactive with reason
/// `token_expired` (the connection status shows it); a transient failure is left for the next
/// run. Connections are read a page at a time, within a bounded amount of work per run: when a
/// run stops before the end, it leaves a cursor and the next run goes on from there.
public struct RefreshHandler: Sendable {
    public let directory: TenantDirectory
    public let ledger: MessageLedger
    public let login: InstagramLogin
    public let transport: any HTTPTransport
    public let clock: WallClock
    /// Tokens expiring within this are refreshed.
    public var windowSeconds: Int64 = 10 * 24 * 3600
    /// Meta refreshes a long-lived token only once it is 24 hours old.
    public var minimumAgeSeconds: Int64 = 24 * 3600
    public var pageSize = 100
    /// The most pages one run reads.
    public var maxPages = 50
    public var callTimeout: Duration = .seconds(5)
    /// The conversation log (`connection.removed` for a token that expired) and the metrics.
    public var telemetry: Telemetry = .none

    public init(directory: TenantDirectory, ledger: MessageLedger, login: InstagramLogin, transport: any HTTPTransport, clock: WallClock = .system) {
        self.directory = directory
        self.ledger = ledger
        self.login = login
        self.transport = transport
        self.clock = clock
    }

    public struct Report: Sendable, Equatable, Encodable {
        public var scanned = 0
        public var refreshed = 0
        /// Marked inactive (`token_expired`).
        public var expired = 0
        /// Worth another try next run (Meta or the store failed for now).
        public var failed = 0
        /// Not an Instagram-Login connection, inactive, or not due.
        public var skipped = 0
        /// Whether this run reached the end of the connections (else the next goes on).
        public var complete = false
    }

    static let cursorKey: Item = ["messageId": .s("refresh:cursor")]

    public func run(deadline: ContinuousClock.Instant, logger: Logger, events: ConversationEvents? = nil) async throws(KeyValueError) -> Report {
        var report = Report()
        let cursor = try await ledger.store.get(ledger.table, key: Self.cursorKey)
        var after = cursor?["after"]?.map
        var pages = 0
        while true {
            let page = try await directory.connectionPage(after: after, limit: pageSize)
            pages += 1
            for connection in page.connections {
                report.scanned += 1
                await refreshIfDue(connection, report: &report, deadline: deadline, events: events, logger: logger)
            }
            after = page.next
            guard let next = page.next else {
                report.complete = true
                try await ledger.store.delete(ledger.table, key: Self.cursorKey)
                break
            }
            if pages >= maxPages || clock.remaining(until: deadline) < .seconds(10) {
                let now = clock.epochSeconds()
                try await ledger.store.put(
                    ledger.table, item: Self.cursorKey.merging(["after": .m(next), "status": .s("cursor"), "expiresAt": .number(now + 7 * 24 * 3600)]) { $1 })
                break
            }
        }
        logger.info(
            "tokens refreshed",
            metadata: [
                "scanned": "\(report.scanned)", "refreshed": "\(report.refreshed)", "expired": "\(report.expired)", "failed": "\(report.failed)",
                "complete": "\(report.complete)",
            ])
        return report
    }

    func refreshIfDue(
        _ connection: TenantCredentials, report: inout Report, deadline: ContinuousClock.Instant, events: ConversationEvents?, logger: Logger
    ) async {
        let now = clock.epochSeconds()
        guard connection.usesInstagramLogin, connection.isActive, let expiresAt = connection.tokenExpiresAt else {
            report.skipped += 1
            return
        }
        var logger = logger
        logger[metadataKey: "businessId"] = "\(connection.businessId)"
        logger[metadataKey: "locationId"] = "\(connection.locationId ?? "-")"
        guard expiresAt > now else {
            await markExpired(connection, why: "the token expired before it was refreshed", report: &report, events: events, logger: logger)
            return
        }
        let issuedAt = connection.tokenIssuedAt ?? 0
        guard expiresAt - now <= windowSeconds, now - issuedAt >= minimumAgeSeconds else {
            report.skipped += 1
            return
        }
        guard clock.remaining(until: deadline) > callTimeout + .seconds(1) else {
            report.failed += 1
            return
        }
        let token: InstagramLogin.Token
        do {
            token = try await login.refreshed(connection.accessToken, transport: transport, timeout: callTimeout)
        } catch {
            if error.isExpiredToken {
                await markExpired(connection, why: error.description, report: &report, events: events, logger: logger)
            } else {
                report.failed += 1
                logger.warning("a token could not be refreshed now: tried again next run", metadata: ["error": "\(error)"])
            }
            return
        }
        do {
            if try await directory.replaceInstagramToken(connection, with: token.accessToken, issuedAt: now, expiresAt: now + token.expiresIn) {
                report.refreshed += 1
            } else {
                // Reconnected meanwhile: its new token stands.
                report.skipped += 1
            }
        } catch {
            report.failed += 1
            logger.error("a refreshed token could not be stored", metadata: ["error": "\(error)"])
        }
    }

    private func markExpired(_ connection: TenantCredentials, why: String, report: inout Report, events: ConversationEvents?, logger: Logger) async {
        do {
            try await directory.markNeedsReconnection(connection, reason: "token_expired")
            report.expired += 1
            events?.add(
                ConversationEvent(
                    .connectionRemoved, businessId: connection.businessId, locationId: connection.locationId, platform: .instagram,
                    reason: "token_expired"))
            logger.warning("an Instagram-Login token expired: the location must connect again", metadata: ["detail": "\(why)"])
        } catch {
            report.failed += 1
            logger.error("an expired connection could not be marked", metadata: ["error": "\(error)"])
        }
    }

    /// Any event (EventBridge's scheduled event, `{}`): the report as JSON.
    public var function: some FunctionHandler { Function(handler: self) }

    struct Function: FunctionHandler {
        let handler: RefreshHandler

        func handle(event: [UInt8], context: InvocationContext) async throws -> [UInt8] {
            guard (try? JSON.parse(event))?.object != nil else {
                throw ProcessEventError(errorMessage: "the event is not a JSON object (EventBridge's scheduled event, or {})")
            }
            do {
                let report = try await handler.run(
                    deadline: context.deadline, logger: context.logger, events: handler.telemetry.events(for: context))
                return JSON.dictionary([
                    "scanned": .number(String(report.scanned)), "refreshed": .number(String(report.refreshed)),
                    "expired": .number(String(report.expired)), "failed": .number(String(report.failed)),
                    "skipped": .number(String(report.skipped)), "complete": .bool(report.complete),
                ]).encoded()
            } catch {
                throw SendError.storeUnavailable("the connections could not be read: \(error.code.rawValue)")
            }
        }
    }
}

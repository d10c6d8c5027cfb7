import FunctionRuntime
import HTTPTransport
import KeyValueStore
import Logging
import MetaGraph
import MetaTelemetry
import MetaTenancy
import MetaWebhooks

/// `POST /external/meta/whatsapp/signup`: the server side of WhatsApp Embedded Signup (v4),
/// as a Tech Provider onboards a business customer (Meta for Developers, "Onboarding business
/// customers as a Tech Provider"). The page posts `{state, code, wabaId, phoneNumberId}` once
/// Meta's popup has finished; the state is `auth-url`'s (signed, bound to the business and the
/// location, single use). Then: the code becomes a business token (`GET /oauth/access_token`),
/// `debug_token` must show `whatsapp_business_messaging` granted on that WABA and the WABA must
/// list that number. Then the page asks the person to confirm which number joins which
/// business and location (the answer is `{"status": "confirm", "consent", "question", ...}`);
/// on `POST /external/meta/connect/confirm` (`ConsentHandler`) the app is subscribed to the
/// WABA's webhooks, the number is registered for the Cloud API with a PIN made here, and only
/// then is the connection stored (its phone number id claimed like a Page). Nothing is stored
/// when a step fails or the person cancels; no token, code or PIN appears in the answer or
/// the logs.
public struct WhatsAppSignupHandler: Sendable {
    public let config: OAuthConfig
    public let appSecret: String
    public let graph: GraphClient
    public let directory: TenantDirectory
    public let ledger: MessageLedger
    public let clock: WallClock
    public let timeout: Duration

    public static let path = "/external/meta/whatsapp/signup"

    public init(
        config: OAuthConfig, appSecret: String, graph: GraphClient, directory: TenantDirectory, ledger: MessageLedger,
        clock: WallClock = .system, timeout: Duration = .seconds(8)
    ) {
        self.config = config
        self.appSecret = appSecret
        self.graph = graph
        self.directory = directory
        self.ledger = ledger
        self.clock = clock
        self.timeout = timeout
    }

    /// The signup's answer: what the person is asked to confirm, and the question's nonce
    /// for `POST /external/meta/connect/confirm`.
    struct ToConfirm: Encodable {
        let status = "confirm"
        let consent: String
        let question: String
        let businessId: String
        let locationId: String
        let wabaId: String
        let phoneNumberId: String
        let displayPhoneNumber: String?
        let verifiedName: String?
    }

    /// Where the signup's result waits for the person's confirmation.
    public var consents: Consents { Consents(store: ledger.store, table: ledger.table, clock: clock) }

    /// A WABA or phone number id: digits only, as Meta issues them.
    static func isMetaId(_ text: String) -> Bool {
        (1...32).contains(text.utf8.count) && text.utf8.allSatisfy { (0x30...0x39).contains($0) }
    }

    public func handle(_ request: HTTPRequest, logger: Logger, events: ConversationEvents? = nil) async throws(RequestRefused) -> HTTPResponse {
        guard request.method == "POST" else { throw RequestRefused(405, code: .methodNotAllowed, "POST the signup's result") }
        guard request.body.count <= 16 * 1024 else { throw RequestRefused(413, code: .payloadTooLarge, "the body is larger than 16 KB") }
        let body: JSON
        do {
            body = try JSON.parse(request.body)
        } catch {
            throw RequestRefused(400, code: .invalidJson, "the body must be a JSON object")
        }
        guard let stateText = body["state"]?.string, !stateText.isEmpty else {
            throw RequestRefused(400, code: .missingState, "state is required (from auth-url or the connect page)")
        }
        guard let code = body["code"]?.string, !code.isEmpty, code.utf8.count <= 4096 else {
            throw RequestRefused(400, code: .missingCode, "code is required (Embedded Signup's FB.login response)")
        }
        guard let wabaId = body["wabaId"]?.string, Self.isMetaId(wabaId), let phoneNumberId = body["phoneNumberId"]?.string,
            Self.isMetaId(phoneNumberId)
        else {
            throw RequestRefused(400, code: .invalidIds, "wabaId and phoneNumberId are required, as the signup's session info gives them")
        }
        let state: OAuthState
        do {
            state = try OAuthState.verify(stateText, secret: config.stateSecret, now: clock.epochSeconds())
        } catch {
            throw RequestRefused(400, code: RefusalCode(error), "the state was altered, has expired or is not ours; start the connection again")
        }
        let tenant = Tenant(businessId: state.businessId, locationId: state.locationId)
        // Spent before anything is said about the number, so one connect link cannot probe,
        // again and again, which numbers other businesses have connected.
        try await useOnce(state)
        // The number must not belong to another business (checked again, atomically, when stored).
        do {
            if let owner = try await directory.route(identifier: phoneNumberId)?.tenant, owner.businessId != tenant.businessId {
                throw RequestRefused(409, code: .alreadyConnected, "this WhatsApp number is connected to another business")
            }
        } catch let refused as RequestRefused {
            throw refused
        } catch {
            throw RequestRefused(503, code: .storeUnavailable, "the connection could not be checked")
        }

        let token = try await exchange(code)
        try await checkAccess(token: token, wabaId: wabaId)
        let number = try await phoneNumber(phoneNumberId, of: wabaId, token: token)
        // Nothing is connected yet: the page asks the person to confirm which number joins
        // which business and location (ConsentHandler connects it then).
        var pending = PendingConnection(
            flow: .whatsappSignup, tenant: tenant, businessName: state.businessName, locationName: state.locationName, token: token, connectedBy: "")
        pending.wabaId = wabaId
        pending.phoneNumberId = phoneNumberId
        pending.displayPhoneNumber = number.display
        pending.verifiedName = number.verifiedName
        let nonce: String
        do {
            nonce = try await consents.hold(pending)
        } catch {
            throw RequestRefused(503, code: .storeUnavailable, "the connection could not be held for your confirmation: \(error.code.rawValue)")
        }
        logger.info(
            "the person is asked to confirm the WhatsApp number",
            metadata: ["businessId": "\(tenant.businessId)", "wabaId": "\(wabaId)", "phoneNumberId": "\(phoneNumberId)"])
        return .json(
            200,
            ToConfirm(
                consent: nonce, question: ConsentHandler.question(pending), businessId: tenant.businessId, locationId: tenant.locationId, wabaId: wabaId,
                phoneNumberId: phoneNumberId, displayPhoneNumber: number.display, verifiedName: number.verifiedName))
    }

    /// Six random digits: the number's two-step verification PIN, kept with the connection.
    static func pin() -> String {
        var generator = SystemRandomNumberGenerator()
        return String(String(UInt32.random(in: 0..<1_000_000, using: &generator) + 1_000_000).dropFirst())
    }

    // MARK: Steps

    /// A state is good once, whichever flow (Facebook Login or this) spends it.
    private func useOnce(_ state: OAuthState) async throws(RequestRefused) {
        do {
            try await ConnectFlow.useOnce(state, ledger: ledger)
        } catch {
            throw RequestRefused(error.status, code: error.refusal, error.message)
        }
    }

    /// Embedded Signup's code for a business token (no redirect URI: the popup had none).
    private func exchange(_ code: String) async throws(RequestRefused) -> String {
        let answer: JSON
        do {
            answer = try await graph.call(
                "GET", "oauth/access_token", query: [("client_id", config.appId), ("client_secret", appSecret), ("code", code)], token: nil,
                timeout: timeout)
        } catch {
            throw refusal(error, status: error.kind == .graph && !error.isTransient ? 400 : 502, code: .codeExchangeFailed, what: "exchange the code")
        }
        guard let token = answer["access_token"]?.string, !token.isEmpty else {
            throw RequestRefused(502, code: .codeExchangeFailed, "the Graph API returned no business token")
        }
        return token
    }

    /// `debug_token`: the token must grant `whatsapp_business_messaging` on this WABA.
    private func checkAccess(token: String, wabaId: String) async throws(RequestRefused) {
        let answer: JSON
        do {
            answer = try await graph.call(
                "GET", "debug_token", query: [("input_token", token)], token: "\(config.appId)|\(appSecret)", timeout: timeout)
        } catch {
            throw refusal(error, status: 502, code: .graphError, what: "check the business token")
        }
        guard let data = answer["data"], data["is_valid"]?.bool == true else {
            throw RequestRefused(400, code: .tokenInvalid, "Meta says the business token is not valid; start the signup again")
        }
        let granted = (data["granular_scopes"]?.array ?? []).contains { entry in
            guard entry["scope"]?.string == "whatsapp_business_messaging" else { return false }
            guard let targets = entry["target_ids"]?.array else { return true }  // no targets: every asset
            return targets.contains { $0.id == wabaId }
        }
        guard granted else {
            throw RequestRefused(
                403, code: .wabaNotGranted, "the signup did not grant whatsapp_business_messaging on WhatsApp account \(wabaId)")
        }
    }

    /// The WABA must list the number (`GET /{waba-id}/phone_numbers`); its display number.
    /// The number's display form, from the WABA's numbers, page after page (Graph's cursor
    /// paging: `paging.cursors.after` while `paging.next` says more are left; the `next` URL
    /// itself is never followed, so the token only ever goes to our Graph host). At most 20
    /// pages.
    private func phoneNumber(
        _ phoneNumberId: String, of wabaId: String, token: String
    ) async throws(RequestRefused) -> (display: String?, verifiedName: String?) {
        var after: String?
        for _ in 0..<20 {
            var query = [("fields", "id,display_phone_number,verified_name")]
            if let after { query.append(("after", after)) }
            let answer: JSON
            do {
                answer = try await graph.call("GET", "\(wabaId)/phone_numbers", query: query, token: token, timeout: timeout)
            } catch {
                throw refusal(error, status: 403, code: .wabaNotReachable, what: "read the WhatsApp account's numbers")
            }
            if let number = (answer["data"]?.array ?? []).first(where: { $0["id"]?.id == phoneNumberId }) {
                return (
                    number["display_phone_number"]?.string.flatMap(DisplayName.checked),
                    number["verified_name"]?.string.flatMap(DisplayName.checked)
                )
            }
            guard answer["paging"]?["next"]?.string != nil, let cursor = answer["paging"]?["cursors"]?["after"]?.string, !cursor.isEmpty,
                cursor != after
            else { break }
            after = cursor
        }
        throw RequestRefused(403, code: .phoneNotInWaba, "WhatsApp account \(wabaId) has no number \(phoneNumberId) this token can reach")
    }

    /// A Graph failure in our words with Meta's code and fbtrace_id (never its free text,
    /// which can quote anything, nor a token).
    private func refusal(_ error: GraphError, status: Int, code: RefusalCode, what: String) -> RequestRefused {
        RequestRefused(status, code: code, error.inOurWords(what))
    }

    public var function: HTTPFunction {
        HTTPFunction { request, context in try await self.handle(request, logger: context.logger) }
    }
}

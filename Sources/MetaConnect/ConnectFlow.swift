import Essentials
import FunctionRuntime
import HTTPTransport
import Logging
import MetaGraph
import MetaTenancy
import MetaWebhooks

/// The steps every connect flow shares (Facebook Login's callback, Instagram Login's, the
/// WhatsApp signup and the person's confirmation): the state checked before anything else and
/// spent once, the person's refusal of the dialog, a Graph call whose failure is said in our
/// own words, and the answer (JSON, or the post-connect page's redirect).
enum ConnectFlow {
    /// The outcome, as JSON or as the query of the post-connect redirect.
    struct Outcome: Encodable {
        struct Candidate: Encodable {
            let pageId: String
            let name: String?
            let instagramAccountId: String?
        }
        var status: String
        var error: String?
        var message: String?
        var businessId: String?
        var locationId: String?
        var pageId: String?
        var pageName: String?
        var instagramAccountId: String?
        var instagramUsername: String?
        var candidates: [Candidate]?
        var wabaId: String?
        var phoneNumberId: String?
        var displayPhoneNumber: String?
    }

    /// `message` is ours and reaches the person; `detail` (Meta's own text, which can quote
    /// anything) goes to the log only, through its redaction.
    struct Failure: HTTPResponseError {
        let status: Int
        let refusal: RefusalCode
        let message: String
        var detail: String? = nil
        var code: String { refusal.rawValue }
        var errorType: String { code }
        var errorMessage: String { message }

        init(status: Int, code: RefusalCode, message: String, detail: String? = nil) {
            self.status = status
            self.refusal = code
            self.message = message
            self.detail = detail
        }

        /// A Graph failure in our own words (`GraphError.inOurWords`: what the call was for,
        /// Meta's code and `fbtrace_id` for support); an expired token says what to do.
        static func graph(_ error: GraphError, status: Int, code: RefusalCode, what: String) -> Failure {
            var message = error.inOurWords(what)
            if error.isExpiredToken {
                message = "the access token expired or was revoked; start the connection again"
                if let trace = error.fbtraceId { message += " (fbtrace_id \(trace))" }
            }
            return Failure(status: status, code: code, message: message, detail: error.description)
        }
    }

    /// A login callback's frame (Facebook Login's and Instagram Login's): the state checked
    /// before anything else, the person's refusal of the dialog, then the flow's own `steps`
    /// with the verified state; a failure of theirs is answered in our words (its detail, which
    /// may quote Meta, to the log only), anything else as an internal error.
    static func callback(
        _ request: HTTPRequest, secret: String, now: Int64, allowed: (String) -> Bool, flow: String, logger: Logger,
        answer: (Outcome, _ httpStatus: Int) -> HTTPResponse, steps: (OAuthState) async throws -> HTTPResponse
    ) async -> HTTPResponse {
        let state: OAuthState
        do {
            state = try verifiedState(request, secret: secret, now: now, allowed: allowed)
        } catch {
            logger.warning("\(flow) callback refused: \(error.code)")
            return answer(Outcome(status: "error", error: error.code, message: error.message), error.status)
        }
        if let declined = declined(request, state: state, logger: logger) { return answer(declined, 200) }
        var outcome = Outcome(status: "error", businessId: state.businessId, locationId: state.locationId)
        do {
            return try await steps(state)
        } catch let failure as Failure {
            logger.warning(
                "\(flow) connection failed: \(failure.code)",
                metadata: ["businessId": "\(state.businessId)", "detail": "\(failure.detail ?? failure.message)"])
            outcome.error = failure.code
            outcome.message = failure.message
            return answer(outcome, failure.status)
        } catch {
            outcome.error = "internal_error"
            return answer(outcome, 500)
        }
    }

    /// A callback's state, checked before anything else: present, signed under `secret`, not
    /// expired, and its redirect URI still allowed.
    static func verifiedState(_ request: HTTPRequest, secret: String, now: Int64, allowed: (String) -> Bool) throws(Failure) -> OAuthState {
        guard let text = request.queryValue("state"), !text.isEmpty else {
            throw Failure(status: 400, code: .missingState, message: "the state parameter is missing")
        }
        let state: OAuthState
        do {
            state = try OAuthState.verify(text, secret: secret, now: now)
        } catch {
            throw Failure(status: 400, code: RefusalCode(error), message: "the state was altered, has expired or is not ours; start the connection again")
        }
        guard allowed(state.redirectUri) else {
            throw Failure(status: 400, code: .redirectUriNotAllowed, message: "the state's redirect URI is no longer allowed")
        }
        return state
    }

    /// The answer when the person declined the dialog (`error` in the query); nil when they did not.
    static func declined(_ request: HTTPRequest, state: OAuthState, logger: Logger) -> Outcome? {
        guard let declined = request.queryValue("error") else { return nil }
        logger.info(
            "the person declined the dialog", metadata: ["businessId": "\(state.businessId)", "reason": "\(request.queryValue("error_reason") ?? declined)"])
        return Outcome(
            status: "denied", error: declined == "access_denied" ? "access_denied" : "oauth_error", message: "the person did not grant the permissions",
            businessId: state.businessId, locationId: state.locationId)
    }

    /// A state is good for one callback or one signup, whichever flow spends it: its nonce is
    /// recorded until it expires.
    static func useOnce(_ state: OAuthState, ledger: MessageLedger) async throws(Failure) {
        let spent: Bool
        do {
            spent = try await ledger.spend(state)
        } catch {
            throw Failure(status: 503, code: .storeUnavailable, message: "the state could not be recorded: \(error.code.rawValue)")
        }
        guard spent else {
            throw Failure(status: 400, code: .stateAlreadyUsed, message: "this connection link was already used; start the connection again")
        }
    }

    /// A Graph call of a connect flow, its failure in our own words (`what` it was for).
    static func graphCall(
        _ graph: GraphClient, _ method: String, _ path: String, query: [(String, String)], token: String, timeout: Duration, what: String
    ) async throws(Failure) -> JSON {
        do {
            return try await graph.call(method, path, query: query, token: token, timeout: timeout)
        } catch {
            throw Failure.graph(error, status: 502, code: error.isExpiredToken ? .tokenExpired : .graphError, what: what)
        }
    }

    /// The outcome as JSON, or, with a post-connect page, a 302 there with the outcome in its query.
    static func answer(_ outcome: Outcome, httpStatus: Int, postConnectRedirectURI: String?) -> HTTPResponse {
        guard let target = postConnectRedirectURI else { return .json(httpStatus, outcome) }
        var query: [(String, String)] = [("status", outcome.status)]
        for (name, value) in [
            ("error", outcome.error), ("businessId", outcome.businessId), ("locationId", outcome.locationId),
            ("pageId", outcome.pageId), ("instagramAccountId", outcome.instagramAccountId),
        ] {
            if let value { query.append((name, value)) }
        }
        let location = target + (target.contains("?") ? "&" : "?") + FormEncoding.query(query)
        return HTTPResponse(status: 302, headers: ["Location": location, "Cache-Control": "no-store"], body: "")
    }
}

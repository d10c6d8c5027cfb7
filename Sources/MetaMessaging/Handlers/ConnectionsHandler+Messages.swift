import Essentials
import FunctionRuntime
import KeyValueStore
import Logging
import MetaTenancy
import MetaWebhooks

/// "My customer wrote at 14:02 and got nothing: why?" `GET
/// /external/meta/messages/{messageId}?businessId=` (IAM; the `serve` key): what the ledger
/// knows of that message, for that business only, in ids and reasons (never its text, never a
/// token).
extension ConnectionsHandler {
    static let messagesPrefix = "/external/meta/messages/"

    struct MessageAnswer: Encodable {
        let messageId: String
        let businessId: String
        /// `never_seen`, `queued`, `answering`, `retrying`, `sending`, `answered`, `no_reply`,
        /// `handed_over`, `unconfirmed`, `paused`, `failed`, or `sent_by_us` (a message of ours).
        let outcome: String
        /// What that means, and what to do, in a sentence.
        let explanation: String
        var updatedAt: String? = nil
        var detail: String? = nil
        var replyId: String? = nil
        var deliveryStatus: String? = nil
        var deliveryError: DeliveryError? = nil
        /// How many times it was sent back to wait for its business's share or Meta's throttle.
        var deferrals: Int64? = nil
        var inReplyTo: String? = nil
    }

    struct DeliveryError: Encodable {
        let code: Int64?
        let title: String?
    }

    func message(_ request: HTTPRequest, path: String) async throws(RequestRefused) -> HTTPResponse {
        // Meta's ids: `mid`s (base64-like), `wamid.…=` (with `=`, `+`, `/` percent-encoded),
        // comment ids: printable ASCII, at most 512 bytes.
        let id = FormEncoding.decode(path.dropFirst(Self.messagesPrefix.count), plusIsSpace: false)
        guard !id.isEmpty, id.utf8.count <= 512, id.unicodeScalars.allSatisfy({ $0.isASCII && $0.value > 0x20 && $0.value < 0x7F }) else {
            throw RequestRefused(400, code: .invalidPath, "the path must be /external/meta/messages/{messageId} (the id percent-encoded)")
        }
        guard let businessId = request.queryValue("businessId"), isValidIdentifier(businessId) else {
            throw RequestRefused(400, code: .invalidBusinessId, "businessId is required (letters, digits, '-', '_', '.', at most 128)")
        }
        let trace: MessageLedger.Trace?
        do {
            trace = try await ledger.trace(id)
        } catch {
            throw RequestRefused(503, code: .storeUnavailable, "the message could not be looked up: \(error.code.rawValue)")
        }
        // Another business's message is not told apart from one never seen.
        guard let trace, trace.businessId == businessId else {
            return .json(
                200,
                MessageAnswer(
                    messageId: id, businessId: businessId, outcome: "never_seen",
                    explanation:
                        "no record of this message for this business: Meta did not deliver it to us (check the Page's or number's webhook "
                        + "subscription and the connection status), it belongs to another account, or it is older than the records are kept (7 days)"))
        }
        return .json(200, Self.explain(trace, id: id, businessId: businessId, now: clock.epochSeconds()))
    }

    static func explain(_ trace: MessageLedger.Trace, id: String, businessId: String, now: Int64) -> MessageAnswer {
        func answer(_ outcome: String, _ explanation: String) -> MessageAnswer {
            var answer = MessageAnswer(messageId: id, businessId: businessId, outcome: outcome, explanation: explanation)
            answer.updatedAt = trace.updatedAt
            answer.detail = trace.detail
            answer.replyId = trace.replyId
            answer.deliveryStatus = trace.deliveryStatus
            if trace.deliveryErrorCode != nil || trace.deliveryErrorTitle != nil {
                answer.deliveryError = DeliveryError(code: trace.deliveryErrorCode, title: trace.deliveryErrorTitle)
            }
            answer.deferrals = trace.deferrals > 0 ? trace.deferrals : nil
            answer.inReplyTo = trace.inReplyTo
            return answer
        }
        if trace.sentByUs {
            return answer(
                "sent_by_us",
                "a message we sent" + (trace.inReplyTo.map { " in reply to \($0)" } ?? " (a business's own send)")
                    + (trace.deliveryStatus.map { "; Meta says it is \($0)" } ?? ""))
        }
        let deferred = trace.deferrals > 0 ? " It was sent back \(trace.deferrals) time(s) to wait for its business's share or Meta's throttle." : ""
        switch trace.status {
        case .queued?:
            return answer("queued", "accepted and waiting in the queue for process." + deferred)
        case .answering? where (trace.leaseUntil ?? 0) < now:
            return answer(
                "retrying",
                "its last try stopped before an outcome (the agent or Meta failed for a while, or the function ended): it is answered on its next delivery."
                    + deferred)
        case .answering?:
            return answer("answering", "being answered now (the agent is composing the reply)." + deferred)
        case .sending?:
            return answer("sending", "the reply is on its way to Meta; if nothing is recorded after a minute, the in-doubt rule settles it.")
        case .answered? where trace.detail == "no reply":
            return answer("no_reply", "the agent chose not to answer it.")
        case .answered? where trace.detail?.hasPrefix("handed over") == true:
            return answer("handed_over", "the agent handed the conversation to a person" + (trace.replyId == nil ? " without a reply." : " after its reply."))
        case .answered?:
            let delivery =
                trace.deliveryStatus.map { status in
                    status == "failed"
                        ? " Meta could not deliver the reply (code \(trace.deliveryErrorCode.map(String.init) ?? "none")): see deliveryError."
                        : " Meta says the reply is \(status)."
                } ?? ""
            return answer("answered", "answered" + (trace.replyId.map { " with the reply \($0)." } ?? ".") + delivery)
        case .unconfirmed?:
            return answer(
                "unconfirmed", "a reply may have reached Meta without its answer being recorded; by the in-doubt rule it was not sent again.")
        case .paused?:
            return answer(
                "paused", "a person had the conversation (the agent was paused): recorded, not answered by the agent. The detail says by whom and until when.")
        case .failed?:
            return answer("failed", "it could not be answered: the detail gives Meta's code or the agent's error and our reason.")
        case nil:
            return answer("unknown", "a record exists but its state is not one we know.")
        }
    }
}

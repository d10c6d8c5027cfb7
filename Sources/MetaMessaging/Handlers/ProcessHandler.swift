import FunctionRuntime
import KeyValueStore
import Logging
import SafeJSON

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// `process`: answers the messages `receive` queued on the SQS FIFO queue (SPEC section 3 and
/// section 4, receive step 8). Takes an SQS event (`Records[]`), claims each message in the
/// exactly-once ledger (a `queued` record, or an `answering` claim whose lease ran out after a
/// crash), runs the agent, sends the reply, and reports the records to retry as
/// `{"batchItemFailures": [{"itemIdentifier": messageId}]}` (Lambda's partial batch response).
/// After a failure in a conversation, the later records of that conversation in the batch
/// are reported too, unprocessed, so its order holds.
public struct ProcessHandler: Sendable {
    public let directory: TenantDirectory
    public let ledger: MessageLedger
    public let responder: MessageResponder

    public init(directory: TenantDirectory, ledger: MessageLedger, responder: MessageResponder) {
        self.directory = directory
        self.ledger = ledger
        self.responder = responder
    }

    public struct Report: Sendable, Equatable {
        public var failures: [String] = []
        public var answered = 0
        public var skipped = 0
    }

    public func handle(records: [JSON], context: InvocationContext) async -> Report {
        var report = Report()
        var failedGroups: Set<String> = []
        for record in records {
            guard let recordId = record["messageId"]?.string else {
                context.logger.error("an SQS record without messageId was skipped")
                continue
            }
            let group = record["attributes"]?["MessageGroupId"]?.string ?? recordId
            if failedGroups.contains(group) {
                report.failures.append(recordId)
                continue
            }
            guard let body = record["body"]?.string,
                let accepted = try? SafeJSON.decode(AcceptedMessage.self, from: Array(body.utf8))
            else {
                // Never answerable: after the queue's maxReceiveCount it lands in the dead-letter queue.
                context.logger.error("an SQS record is not an accepted message", metadata: ["recordId": "\(recordId)"])
                report.failures.append(recordId)
                failedGroups.insert(group)
                continue
            }
            switch await answer(accepted, recordId: recordId, context: context) {
            case .done: report.answered += 1
            case .skipped: report.skipped += 1
            case .retry:
                report.failures.append(recordId)
                failedGroups.insert(group)
            }
        }
        return report
    }

    enum RecordOutcome { case done, skipped, retry }

    func answer(_ accepted: AcceptedMessage, recordId: String, context: InvocationContext) async -> RecordOutcome {
        var logger = context.logger
        logger[metadataKey: "messageId"] = "\(accepted.message.messageId)"
        let message = accepted.message
        let owner = "\(context.requestID):\(recordId)"
        do {
            let claim = try await ledger.claim(
                message.messageId, businessId: accepted.tenant.businessId, owner: owner,
                as: .answering, claimable: [.queued])
            switch claim {
            case .claimed: break
            case .taken(.answering):
                logger.info("another invocation is answering this message: retried later")
                return .retry
            case .taken(let status):
                logger.info("already handled: skipped", metadata: ["status": "\(status?.rawValue ?? "unknown")"])
                return .skipped
            }
            guard let credentials = try await directory.credentials(tenant: accepted.tenant), credentials.isActive else {
                logger.warning("tenant has no active credentials: not answered")
                try await ledger.finish(message.messageId, owner: owner, status: .failed, detail: "no active credentials")
                return .skipped
            }
            let outcome = await responder.answer(
                message, tenant: accepted.tenant, credentials: credentials, owner: owner,
                deadline: context.deadline - .milliseconds(300), retryTransient: true, later: context.afterResponse, logger: logger)
            switch outcome {
            case .answered, .noReply: return .done
            case .failed: return .skipped
            case .retryLater: return .retry
            }
        } catch {
            logger.error("store failure: retried later", metadata: ["error": "\(error)"])
            return .retry
        }
    }

    public var function: some FunctionHandler { Function(handler: self) }

    struct Function: FunctionHandler {
        let handler: ProcessHandler

        func handle(event: [UInt8], context: InvocationContext) async throws -> [UInt8] {
            guard let document = try? JSON.parse(event), let records = document["Records"]?.array else {
                throw ProcessEventError(errorMessage: "the event is not an SQS event (no Records array)")
            }
            let report = await handler.handle(records: records, context: context)
            context.logger.info(
                "batch processed",
                metadata: [
                    "records": "\(records.count)", "answered": "\(report.answered)", "skipped": "\(report.skipped)",
                    "failures": "\(report.failures.count)",
                ])
            return JSON.dictionary(["batchItemFailures": .array(report.failures.map { ["itemIdentifier": .string($0)] })]).encoded()
        }
    }
}

public struct ProcessEventError: FunctionError {
    public let errorMessage: String
    public var errorType: String { "InvalidEvent" }
}

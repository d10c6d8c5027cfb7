import Essentials
import Logging

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// One invocation as the Runtime API hands it out (`GET /runtime/invocation/next`).
public struct LambdaInvocation: Sendable, Equatable {
    public var requestID: String
    /// `Lambda-Runtime-Deadline-Ms`: wall-clock epoch milliseconds, as text.
    public var deadlineMilliseconds: String?
    public var traceID: String?
    public var invokedFunctionARN: String?
    public var event: [UInt8]

    public init(requestID: String, deadlineMilliseconds: String? = nil, traceID: String? = nil, invokedFunctionARN: String? = nil, event: [UInt8]) {
        self.requestID = requestID
        self.deadlineMilliseconds = deadlineMilliseconds
        self.traceID = traceID
        self.invokedFunctionARN = invokedFunctionARN
        self.event = event
    }
}

/// The Lambda Runtime API as the loop uses it: the blocking HTTP client speaks it to Lambda,
/// a test scripts it in process (as swift-aws-lambda-runtime's loop is generic over its client).
public protocol LambdaRuntimeAPI {
    associatedtype Failure: Error
    func next() throws(Failure) -> LambdaInvocation
    func respond(requestID: String, body: [UInt8]) throws(Failure)
    func reportError(requestID: String, errorType: String, document: [UInt8]) throws(Failure)
    func reportInitError(errorType: String, document: [UInt8]) throws(Failure)
}

/// The rules of the Lambda loop, apart from any process: a configuration or init error is
/// reported on `/runtime/init/error` before the first `next`; every invocation gets its
/// request id, monotonic deadline and trace id (also exported as `_X_AMZN_TRACE_ID`); a
/// function error is reported on `/runtime/invocation/{id}/error` and the loop goes on; work
/// a handler left for after its answer runs once the answer is posted, before the next `next`. The
/// loop ends only when the Runtime API fails; the executable's edge turns that into an exit.
public enum LambdaLoop {
    public enum End: Sendable, Equatable {
        /// Initialisation failed (reported to the Runtime API).
        case initFailed(errorType: String)
        /// The Runtime API could not be reached or answered something unusable.
        case runtimeAPIFailed(String)
    }

    public static func run<API: LambdaRuntimeAPI>(
        _ api: API, environment: Environment, logger: Logger,
        wallClockMilliseconds: () -> Int64 = WallClock.epochMilliseconds, clock: WallClock = .system,
        makeHandler: @Sendable (Environment, Logger) async throws -> any FunctionHandler
    ) async -> End {
        let handler: any FunctionHandler
        do {
            handler = try await makeHandler(environment, logger)
        } catch {
            let document: ErrorDocument
            if let configuration = error as? ConfigurationError {
                document = ErrorDocument(errorType: "Runtime.ConfigurationError", errorMessage: configuration.description)
                logger.error("\(configuration.description)")
            } else {
                document = ErrorDocument(error)
                logger.error("initialisation failed", metadata: ["errorType": "\(document.errorType)"])
            }
            try? api.reportInitError(errorType: document.errorType, document: FunctionRuntime.encode(document))
            return .initFailed(errorType: document.errorType)
        }

        while true {
            do {
                let invocation = try api.next()
                if let traceID = invocation.traceID { setenv("_X_AMZN_TRACE_ID", traceID, 1) } else { unsetenv("_X_AMZN_TRACE_ID") }
                var invocationLogger = logger
                invocationLogger[metadataKey: "requestId"] = "\(invocation.requestID)"
                if let traceID = invocation.traceID { invocationLogger[metadataKey: "traceId"] = "\(traceID)" }
                let context = InvocationContext(
                    requestID: invocation.requestID,
                    deadline: deadline(epochMilliseconds: invocation.deadlineMilliseconds, wallNow: wallClockMilliseconds(), now: clock.instant()),
                    traceID: invocation.traceID, invokedFunctionARN: invocation.invokedFunctionARN, logger: invocationLogger, clock: clock)
                let output: [UInt8]
                do {
                    output = try await context.bounded { try await handler.handle(event: invocation.event, context: context) }
                } catch {
                    let document = ErrorDocument(error)
                    invocationLogger.error("function error", metadata: ["errorType": "\(document.errorType)"])
                    try api.reportError(requestID: invocation.requestID, errorType: document.errorType, document: FunctionRuntime.encode(document))
                    await context.afterResponse.run(before: context.deadline, clock: clock)
                    continue
                }
                try api.respond(requestID: invocation.requestID, body: output)
                // The invoker has its answer; what the handler left for later runs now, before
                // the next invocation is asked for (and the environment may be frozen).
                await context.afterResponse.run(before: context.deadline, clock: clock)
            } catch {
                // The Runtime API itself is gone: nothing more can be served; Lambda restarts us.
                logger.critical("Runtime API unreachable: \(error)")
                return .runtimeAPIFailed("\(error)")
            }
        }
    }

    /// Lambda gives the deadline as wall-clock epoch milliseconds; the handler works with a
    /// monotonic instant so a clock step cannot stretch or cut its budget. The header is the
    /// Runtime API's but never trusted to be sane: a missing or unreadable one gives 30 s, and
    /// a remaining time outside 0 ... 15 minutes is clamped instead of overflowing.
    static func deadline(epochMilliseconds: String?, wallNow: Int64, now: ContinuousClock.Instant) -> ContinuousClock.Instant {
        guard let text = epochMilliseconds, let deadline = Int64(text) else { return now + .seconds(30) }
        let (remaining, overflow) = deadline.subtractingReportingOverflow(wallNow)
        return now + .milliseconds(overflow ? 0 : min(max(remaining, 0), 900_000))
    }
}

/// The real Runtime API: the blocking HTTP client.
extension RuntimeAPIClient: LambdaRuntimeAPI {
    func next() throws(TransportError) -> LambdaInvocation {
        let answer = try send(method: "GET", path: RuntimeAPI.next)
        guard answer.status == 200, let requestID = answer.headers[RuntimeAPI.requestIDHeader] else {
            throw TransportError(description: "the Runtime API answered next with \(answer.status)")
        }
        return LambdaInvocation(
            requestID: requestID, deadlineMilliseconds: answer.headers[RuntimeAPI.deadlineHeader],
            traceID: answer.headers[RuntimeAPI.traceIDHeader], invokedFunctionARN: answer.headers[RuntimeAPI.functionARNHeader],
            event: answer.body)
    }

    func respond(requestID: String, body: [UInt8]) throws(TransportError) {
        _ = try send(method: "POST", path: RuntimeAPI.response(requestID), body: body)
    }

    func reportError(requestID: String, errorType: String, document: [UInt8]) throws(TransportError) {
        _ = try send(
            method: "POST", path: RuntimeAPI.error(requestID),
            headers: [(RuntimeAPI.errorTypeHeader, errorType), ("Content-Type", "application/json")], body: document)
    }

    func reportInitError(errorType: String, document: [UInt8]) throws(TransportError) {
        _ = try send(
            method: "POST", path: RuntimeAPI.initError,
            headers: [(RuntimeAPI.errorTypeHeader, errorType), ("Content-Type", "application/json")], body: document)
    }
}

import Logging

/// What the runtime knows about one invocation, handed to the handler with the event.
public struct InvocationContext: Sendable {
    public let requestID: String
    /// When the invocation must have answered (Lambda's `Lambda-Runtime-Deadline-Ms`).
    public let deadline: ContinuousClock.Instant
    /// `Lambda-Runtime-Trace-Id`, also exported as `_X_AMZN_TRACE_ID`.
    public let traceID: String?
    public let invokedFunctionARN: String?
    public let logger: Logger
    /// Work to run once the answer is out (see `AfterResponse`).
    public let afterResponse: AfterResponse

    public init(
        requestID: String, deadline: ContinuousClock.Instant, traceID: String? = nil,
        invokedFunctionARN: String? = nil, logger: Logger, afterResponse: AfterResponse = AfterResponse()
    ) {
        self.requestID = requestID
        self.deadline = deadline
        self.traceID = traceID
        self.invokedFunctionARN = invokedFunctionARN
        self.logger = logger
        self.afterResponse = afterResponse
    }

    /// Time left before the deadline (zero once it has passed).
    public var remaining: Duration {
        max(.zero, deadline - ContinuousClock.now)
    }
}

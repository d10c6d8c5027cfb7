import Essentials
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
    /// The clock `deadline` is an instant of, and the one the handler's budgets are measured
    /// on (a test's clock in a test).
    public let clock: WallClock

    public init(
        requestID: String, deadline: ContinuousClock.Instant, traceID: String? = nil,
        invokedFunctionARN: String? = nil, logger: Logger, afterResponse: AfterResponse = AfterResponse(), clock: WallClock = .system
    ) {
        self.clock = clock
        self.requestID = requestID
        self.deadline = deadline
        self.traceID = traceID
        self.invokedFunctionARN = invokedFunctionARN
        self.logger = logger
        self.afterResponse = afterResponse
    }

    /// Time kept back from the deadline for the answer itself: the handler's waits on stores,
    /// queues, Graph and agents end this long before it, so a stalled dependency still leaves
    /// time to encode and post an answer (a 500 that asks for redelivery) in time.
    public static let answerMargin: Duration = .milliseconds(500)

    /// Runs the handler's work with every outbound wait bounded by the deadline less
    /// `answerMargin` (`Deadline`).
    public func bounded<T>(_ body: () async throws -> T) async throws -> T {
        try await Deadline.within(deadline - Self.answerMargin, clock: clock) { () async throws -> T in try await body() }
    }

    /// Time left before the deadline (zero once it has passed).
    public var remaining: Duration {
        max(.zero, clock.remaining(until: deadline))
    }
}

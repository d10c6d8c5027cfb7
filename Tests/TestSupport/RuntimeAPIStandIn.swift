import Foundation

/// A loopback Lambda Runtime API that follows AWS's documented protocol ("Using the Lambda
/// runtime API for custom runtimes"): `GET /2018-06-01/runtime/invocation/next` long-polls
/// until an event is queued and answers with the event and the `Lambda-Runtime-*` headers;
/// `POST .../{id}/response`, `.../{id}/error` and `/runtime/init/error` answer 202 and are recorded.
public final class RuntimeAPIStandIn: Sendable {
    public struct Invocation: Sendable {
        public let requestID: String
        public let event: [UInt8]
        public let traceID: String
        public let deadlineMs: Int64
    }

    public enum Outcome: Sendable, Equatable {
        case response(body: String)
        case error(errorType: String, body: String)
    }

    public struct InitError: Sendable {
        public let errorType: String
        public let body: String
        /// How many `next` calls had arrived before the init error.
        public let nextCallsBefore: Int
    }

    private let state = State()
    public let server: LoopbackServer
    public var endpoint: String { "127.0.0.1:\(server.port)" }

    public init() async throws {
        let state = self.state
        server = try await LoopbackServer { request in await state.handle(request) }
    }

    /// Queues an event; returns its request id.
    @discardableResult
    public func enqueue(
        _ event: [UInt8], requestID: String = UUID().uuidString.lowercased(),
        traceID: String? = nil, deadlineIn seconds: Double = 30
    ) async -> String {
        let deadline = Int64((Date().timeIntervalSince1970 + seconds) * 1000)
        let trace =
            traceID
            ?? "Root=1-\(String(Int(Date().timeIntervalSince1970), radix: 16))-\(UUID().uuidString.replacingOccurrences(of: "-", with: "").prefix(24).lowercased());Sampled=0"
        await state.enqueue(Invocation(requestID: requestID, event: event, traceID: trace, deadlineMs: deadline))
        return requestID
    }

    /// Waits until the invocation has a response or an error (or the timeout passes).
    public func outcome(of requestID: String, timeout: Duration = .seconds(30)) async -> Outcome? {
        await state.outcome(of: requestID, timeout: timeout)
    }

    public func initError(timeout: Duration = .seconds(30)) async -> InitError? {
        await state.initError(timeout: timeout)
    }

    /// How long the function had the invocation: from `next` handing it out to its response or
    /// error arriving (what Lambda bills as the duration); nil until both happened.
    public func serviceTime(of requestID: String) async -> Duration? {
        await state.serviceTime(of: requestID)
    }

    /// When the invocation's response or error arrived (what Lambda holds to the deadline);
    /// nil before.
    public func answeredAt(_ requestID: String) async -> ContinuousClock.Instant? {
        await state.answered[requestID]
    }

    public var nextCalls: Int { get async { await state.nextCalls } }
    public var connectionCount: Int { server.acceptedConnections }

    public func shutdown() async { await server.shutdown() }
}

private actor State {
    var queue: [RuntimeAPIStandIn.Invocation] = []
    var waiters: [CheckedContinuation<RuntimeAPIStandIn.Invocation, Never>] = []
    var outcomes: [String: RuntimeAPIStandIn.Outcome] = [:]
    var outcomeWaiters: [String: [CheckedContinuation<Void, Never>]] = [:]
    var initErrorValue: RuntimeAPIStandIn.InitError?
    var nextCalls = 0
    var handedOut: [String: ContinuousClock.Instant] = [:]
    var answered: [String: ContinuousClock.Instant] = [:]

    func enqueue(_ invocation: RuntimeAPIStandIn.Invocation) {
        if waiters.isEmpty {
            queue.append(invocation)
        } else {
            waiters.removeFirst().resume(returning: invocation)
        }
    }

    func nextInvocation() async -> RuntimeAPIStandIn.Invocation {
        if !queue.isEmpty { return queue.removeFirst() }
        return await withCheckedContinuation { waiters.append($0) }
    }

    func handle(_ request: LoopbackServer.Request) async -> LoopbackServer.Response {
        let prefix = "/2018-06-01/runtime/"
        guard request.path.hasPrefix(prefix) else { return .json(404, #"{"errorMessage":"not found"}"#) }
        let rest = String(request.path.dropFirst(prefix.count))
        if request.method == "GET", rest == "invocation/next" {
            nextCalls += 1
            let invocation = await nextInvocation()
            handedOut[invocation.requestID] = .now
            return LoopbackServer.Response(
                status: 200,
                headers: [
                    ("Content-Type", "application/json"),
                    ("Lambda-Runtime-Aws-Request-Id", invocation.requestID),
                    ("Lambda-Runtime-Deadline-Ms", String(invocation.deadlineMs)),
                    ("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:eu-west-1:123456789012:function:test"),
                    ("Lambda-Runtime-Trace-Id", invocation.traceID),
                ], body: invocation.event)
        }
        if request.method == "POST", rest == "init/error" {
            initErrorValue = .init(
                errorType: request.header("Lambda-Runtime-Function-Error-Type") ?? "",
                body: request.bodyText, nextCallsBefore: nextCalls)
            return .json(202, #"{"status":"OK"}"#)
        }
        let parts = rest.split(separator: "/")
        if request.method == "POST", parts.count == 3, parts[0] == "invocation" {
            let id = String(parts[1])
            switch parts[2] {
            case "response": outcomes[id] = .response(body: request.bodyText)
            case "error": outcomes[id] = .error(errorType: request.header("Lambda-Runtime-Function-Error-Type") ?? "", body: request.bodyText)
            default: return .json(404, #"{"errorMessage":"not found"}"#)
            }
            answered[id] = .now
            for waiter in outcomeWaiters.removeValue(forKey: id) ?? [] { waiter.resume() }
            return .json(202, #"{"status":"OK"}"#)
        }
        return .json(404, #"{"errorMessage":"not found"}"#)
    }

    func serviceTime(of id: String) -> Duration? {
        guard let start = handedOut[id], let end = answered[id] else { return nil }
        return end - start
    }

    /// Resumes as soon as the outcome is posted (or the timeout passes).
    func outcome(of id: String, timeout: Duration) async -> RuntimeAPIStandIn.Outcome? {
        if let outcome = outcomes[id] { return outcome }
        let timer = Task { [weak self] in
            try? await Task.sleep(for: timeout)
            await self?.expire(id)
        }
        await withCheckedContinuation { outcomeWaiters[id, default: []].append($0) }
        timer.cancel()
        return outcomes[id]
    }

    private func expire(_ id: String) {
        for waiter in outcomeWaiters.removeValue(forKey: id) ?? [] { waiter.resume() }
    }

    func initError(timeout: Duration) async -> RuntimeAPIStandIn.InitError? {
        let end = ContinuousClock.now + timeout
        while ContinuousClock.now < end {
            if let value = initErrorValue { return value }
            try? await Task.sleep(for: .milliseconds(5))
        }
        return initErrorValue
    }
}

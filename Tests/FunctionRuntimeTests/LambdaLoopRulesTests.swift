import Foundation
import FunctionRuntime
import Logging
import Synchronization
import TestSupport
import Testing

/// A Runtime API scripted in process: hands out the invocations it is given, records what the
/// loop answers, and fails `next` once the script is used up (which ends the loop).
final class ScriptedRuntimeAPI: LambdaRuntimeAPI, Sendable {
    struct Exhausted: Error {}
    enum Call: Equatable {
        case next
        case response(String, String)
        case error(String, String, String)
        case initError(String, String)
    }

    private let state: Mutex<(invocations: [LambdaInvocation], calls: [Call])>

    init(_ invocations: [LambdaInvocation]) {
        state = Mutex((invocations, []))
    }

    var calls: [Call] { state.withLock { $0.calls } }

    func next() throws(Exhausted) -> LambdaInvocation {
        let invocation = state.withLock { state -> LambdaInvocation? in
            state.calls.append(.next)
            return state.invocations.isEmpty ? nil : state.invocations.removeFirst()
        }
        guard let invocation else { throw Exhausted() }
        return invocation
    }

    func respond(requestID: String, body: [UInt8]) throws(Exhausted) {
        state.withLock { $0.calls.append(.response(requestID, String(decoding: body, as: UTF8.self))) }
    }

    func reportError(requestID: String, errorType: String, document: [UInt8]) throws(Exhausted) {
        state.withLock { $0.calls.append(.error(requestID, errorType, String(decoding: document, as: UTF8.self))) }
    }

    func reportInitError(errorType: String, document: [UInt8]) throws(Exhausted) {
        state.withLock { $0.calls.append(.initError(errorType, String(decoding: document, as: UTF8.self))) }
    }
}

final class EchoHandler: FunctionHandler {
    struct Refused: FunctionError {
        var errorType: String { "Refused" }
        var errorMessage: String { "the event says no" }
    }

    let seen: Mutex<[InvocationContextSnapshot]> = Mutex([])

    func handle(event: [UInt8], context: InvocationContext) async throws -> [UInt8] {
        seen.withLock {
            $0.append(
                InvocationContextSnapshot(
                    requestID: context.requestID, remaining: context.remaining, traceID: context.traceID,
                    traceEnvironment: ProcessInfo.processInfo.environment["_X_AMZN_TRACE_ID"], arn: context.invokedFunctionARN))
        }
        if event == Array("no".utf8) { throw Refused() }
        return Array("echo:".utf8) + event
    }
}

struct InvocationContextSnapshot: Sendable {
    let requestID: String
    let remaining: Duration
    let traceID: String?
    let traceEnvironment: String?
    let arn: String?
}

/// The Lambda loop's rules, in process with a scripted Runtime API (the process-level tests
/// in LambdaLoopTests keep the real protocol).
@Suite(.serialized) struct LambdaLoopRulesTests {
    static let logger = Logger(label: "loop-test")

    @Test func aConfigurationErrorIsReportedBeforeTheFirstNext() async {
        let api = ScriptedRuntimeAPI([LambdaInvocation(requestID: "r1", event: [])])
        let end = await LambdaLoop.run(api, environment: Environment([:]), logger: Self.logger) { _, _ in
            throw ConfigurationError(variable: "META_APP_SECRET")
        }
        #expect(end == .initFailed(errorType: "Runtime.ConfigurationError"))
        #expect(api.calls.count == 1)
        guard case .initError(let type, let document)? = api.calls.first else {
            Issue.record("no init error reported: \(api.calls)")
            return
        }
        #expect(type == "Runtime.ConfigurationError")
        #expect(document.contains("META_APP_SECRET"))
    }

    @Test func aBadEventIsReportedAndTheLoopGoesOn() async {
        let api = ScriptedRuntimeAPI([
            LambdaInvocation(requestID: "r1", event: Array("no".utf8)),
            LambdaInvocation(requestID: "r2", event: Array("hello".utf8)),
        ])
        let handler = EchoHandler()
        let end = await LambdaLoop.run(api, environment: Environment([:]), logger: Self.logger) { _, _ in handler }
        guard case .runtimeAPIFailed = end else {
            Issue.record("the loop ended \(end)")
            return
        }
        #expect(
            api.calls == [
                .next, .error("r1", "Refused", #"{"errorMessage":"the event says no","errorType":"Refused"}"#),
                .next, .response("r2", "echo:hello"), .next,
            ])
    }

    @Test func eachInvocationGetsItsTraceIDDeadlineAndARN() async {
        let now = TestClock().nowMilliseconds
        let api = ScriptedRuntimeAPI([
            LambdaInvocation(
                requestID: "r1", deadlineMilliseconds: String(now + 2500), traceID: "Root=1-abc;Sampled=1",
                invokedFunctionARN: "arn:aws:lambda:eu-west-1:123456789012:function:receive", event: []),
            LambdaInvocation(requestID: "r2", deadlineMilliseconds: "not a number", event: []),
            LambdaInvocation(requestID: "r3", deadlineMilliseconds: String(Int64.min), event: []),
            LambdaInvocation(requestID: "r4", deadlineMilliseconds: String(Int64.max), event: []),
        ])
        let handler = EchoHandler()
        _ = await LambdaLoop.run(api, environment: Environment([:]), logger: Self.logger, wallClockMilliseconds: { now }) { _, _ in handler }
        let seen = handler.seen.withLock { $0 }
        #expect(seen.map(\.requestID) == ["r1", "r2", "r3", "r4"])
        #expect(seen[0].traceID == "Root=1-abc;Sampled=1")
        #expect(seen[0].traceEnvironment == "Root=1-abc;Sampled=1")
        #expect(seen[1].traceEnvironment == nil)
        #expect(seen[0].arn == "arn:aws:lambda:eu-west-1:123456789012:function:receive")
        #expect(seen[0].remaining > .milliseconds(2000) && seen[0].remaining <= .milliseconds(2500))
        // An unreadable deadline gives 30 s; absurd ones are clamped to 0 and 15 minutes.
        #expect(seen[1].remaining > .seconds(29) && seen[1].remaining <= .seconds(30))
        #expect(seen[2].remaining == .zero)
        #expect(seen[3].remaining > .seconds(899) && seen[3].remaining <= .seconds(900))
    }

    /// A handler that leaves work for after its answer, noting when it runs.
    final class LaterHandler: FunctionHandler, Sendable {
        let api: ScriptedRuntimeAPI
        let ranAfter: Mutex<[[ScriptedRuntimeAPI.Call]]> = Mutex([])
        init(api: ScriptedRuntimeAPI) { self.api = api }

        func handle(event: [UInt8], context: InvocationContext) async throws -> [UInt8] {
            context.afterResponse.add { [self] in ranAfter.withLock { $0.append(api.calls) } }
            // Work that would outlive the invocation is cut at its deadline, not waited for.
            context.afterResponse.add { try? await Task.sleep(for: .seconds(600)) }
            return Array("done".utf8)
        }
    }

    @Test func workLeftForLaterRunsOnceTheAnswerIsPostedAndBeforeTheNextNext() async {
        let now = TestClock().nowMilliseconds
        let api = ScriptedRuntimeAPI([
            LambdaInvocation(requestID: "r1", deadlineMilliseconds: String(now + 300), event: []),
            LambdaInvocation(requestID: "r2", deadlineMilliseconds: String(now + 300), event: []),
        ])
        let handler = LaterHandler(api: api)
        let start = ContinuousClock.now
        _ = await LambdaLoop.run(api, environment: Environment([:]), logger: Self.logger, wallClockMilliseconds: { now }) { _, _ in handler }
        // Each time, the answer was already posted and the next invocation not yet asked for.
        #expect(
            handler.ranAfter.withLock { $0 } == [
                [.next, .response("r1", "done")],
                [.next, .response("r1", "done"), .next, .response("r2", "done")],
            ])
        #expect(ContinuousClock.now - start < .seconds(5))
    }
}

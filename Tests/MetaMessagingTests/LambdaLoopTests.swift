import Foundation
import TestSupport
import Testing

/// The Runtime API loop as a real process against a loopback Runtime API.
@Suite(.serialized) struct LambdaLoopTests {
    /// Whether the invocation was answered with verify's 200 and the sample events' challenge;
    /// records an issue when there was no answer at all.
    private func expectChallengeAnswered(_ outcome: RuntimeAPIStandIn.Outcome?, _ what: String) throws -> Bool {
        guard case .response(let body) = outcome else {
            Issue.record("no response for \(what): \(String(describing: outcome))")
            return false
        }
        let object = try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any]
        #expect(object?["statusCode"] as? Int == 200, "\(what)")
        #expect(object?["body"] as? String == "1158201444", "\(what)")
        return true
    }

    @Test func manyInvocationsInARowOnOneConnection() async throws {
        let api = try await RuntimeAPIStandIn()
        let (process, _) = try Executables.start(
            "verify",
            environment: [
                "AWS_LAMBDA_RUNTIME_API": api.endpoint, "META_WEBHOOK_VERIFY_TOKEN": "local-verify-token",
            ])
        defer { process.terminate() }
        for index in 0..<40 {
            let name = index.isMultiple(of: 2) ? "verify.json" : "verify-http-api.json"
            let id = await api.enqueue(TestEvents.load(name))
            guard try expectChallengeAnswered(await api.outcome(of: id), "invocation \(index)") else { return }
        }
        #expect(api.connectionCount == 1)
        await api.shutdown()
    }

    /// An event far larger than the client's first read buffer (API Gateway allows 10 MB):
    /// the buffer grows, the answer is right, and the next small event is served as usual.
    @Test func largeEventsAreReadWholeAndTheLoopGoesOn() async throws {
        let api = try await RuntimeAPIStandIn()
        let (process, _) = try Executables.start(
            "verify",
            environment: [
                "AWS_LAMBDA_RUNTIME_API": api.endpoint, "META_WEBHOOK_VERIFY_TOKEN": "local-verify-token",
            ])
        defer { process.terminate() }
        var event = try #require(try JSONSerialization.jsonObject(with: Data(TestEvents.load("verify.json"))) as? [String: Any])
        event["body"] = Data((0..<3_000_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }).base64EncodedString()
        event["isBase64Encoded"] = true
        let large = Array(try JSONSerialization.data(withJSONObject: event))
        #expect(large.count > 4_000_000)
        for name in ["large", "small", "large"] {
            let id = await api.enqueue(name == "large" ? large : TestEvents.load("verify.json"))
            guard try expectChallengeAnswered(await api.outcome(of: id), "the \(name) event") else { return }
        }
        #expect(api.connectionCount == 1)
        await api.shutdown()
    }

    /// Events sent with chunked transfer coding (uneven chunks, a chunk extension), as a Go
    /// `net/http` Runtime API sends any body over 2 KB.
    @Test(arguments: [false, true])
    func chunkedEventsAreReassembled(large: Bool) async throws {
        var event = TestEvents.load("verify.json")
        if large {
            var object = try #require(try JSONSerialization.jsonObject(with: Data(event)) as? [String: Any])
            object["body"] = String(repeating: "0123456789abcdef", count: 40_000)
            event = Array(try JSONSerialization.data(withJSONObject: object))
        }
        let api = try BlockingRuntimeAPI(event: event, chunked: true)
        let (process, _) = try Executables.start(
            "verify",
            environment: [
                "AWS_LAMBDA_RUNTIME_API": api.endpoint, "META_WEBHOOK_VERIFY_TOKEN": "local-verify-token",
            ])
        defer {
            api.close()
            process.terminate()
        }
        let totals = await api.answered(3)
        #expect(totals.responses == 3 && totals.errors == 0)
        let post = try #require(api.lastPost)
        #expect(post.path == "/2018-06-01/runtime/invocation/bench-3/response")
        let object = try JSONSerialization.jsonObject(with: Data(post.body)) as? [String: Any]
        #expect(object?["statusCode"] as? Int == 200)
        #expect(object?["body"] as? String == "1158201444")
    }

    @Test func malformedEventIsReportedAndTheLoopGoesOn() async throws {
        let api = try await RuntimeAPIStandIn()
        let (process, _) = try Executables.start(
            "verify",
            environment: [
                "AWS_LAMBDA_RUNTIME_API": api.endpoint, "META_WEBHOOK_VERIFY_TOKEN": "local-verify-token",
            ])
        defer { process.terminate() }
        let bad = await api.enqueue(Array("{not json".utf8))
        guard case .error(let errorType, let body) = await api.outcome(of: bad) else {
            Issue.record("the malformed event was not reported on /error")
            return
        }
        #expect(errorType == "InvalidEvent")
        let document = try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any]
        #expect(document?["errorType"] as? String == "InvalidEvent")
        #expect(document?["errorMessage"] is String)

        let good = await api.enqueue(TestEvents.load("verify.json"))
        guard case .response = await api.outcome(of: good) else {
            Issue.record("the loop stopped after a malformed event")
            return
        }
        #expect(process.isRunning)
        await api.shutdown()
    }

    @Test func missingVariableIsAnInitErrorBeforeAnyNext() async throws {
        let api = try await RuntimeAPIStandIn()
        let (process, _) = try Executables.start("verify", environment: ["AWS_LAMBDA_RUNTIME_API": api.endpoint])
        await Executables.wait(process)
        let initError = try #require(await api.initError(timeout: .seconds(5)))
        #expect(initError.nextCallsBefore == 0)
        #expect(await api.nextCalls == 0)
        #expect(initError.errorType == "Runtime.ConfigurationError")
        #expect(initError.body.contains("META_WEBHOOK_VERIFY_TOKEN"))
        #expect(process.terminationStatus != 0)
        await api.shutdown()
    }

    @Test func traceIDReachesTheHandler() async throws {
        let api = try await RuntimeAPIStandIn()
        let (process, log) = try Executables.start(
            "verify",
            environment: [
                "AWS_LAMBDA_RUNTIME_API": api.endpoint, "META_WEBHOOK_VERIFY_TOKEN": "local-verify-token",
            ])
        let trace = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
        let id = await api.enqueue(TestEvents.load("verify.json"), requestID: "req-trace-1", traceID: trace)
        _ = await api.outcome(of: id)
        process.terminate()
        await Executables.wait(process)
        let logs = try String(contentsOf: log, encoding: .utf8)
        let line = try #require(logs.split(separator: "\n").first { $0.contains("verification accepted") })
        let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
        #expect(object?["traceId"] as? String == trace)
        #expect(object?["requestId"] as? String == "req-trace-1")
        #expect(!logs.contains("local-verify-token"))
        await api.shutdown()
    }
}

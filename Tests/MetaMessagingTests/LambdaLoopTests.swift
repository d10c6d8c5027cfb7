import Foundation
import Testing
import TestSupport

/// The Runtime API loop as a real process against a loopback Runtime API.
@Suite(.serialized) struct LambdaLoopTests {
    @Test func manyInvocationsInARowOnOneConnection() async throws {
        let api = try await RuntimeAPIStandIn()
        let (process, _) = try Executables.start("verify", environment: [
            "AWS_LAMBDA_RUNTIME_API": api.endpoint, "META_WEBHOOK_VERIFY_TOKEN": "local-verify-token",
        ])
        defer { process.terminate() }
        for index in 0..<40 {
            let name = index.isMultiple(of: 2) ? "verify.json" : "verify-http-api.json"
            let id = await api.enqueue(TestEvents.load(name))
            let outcome = await api.outcome(of: id)
            guard case .response(let body) = outcome else {
                Issue.record("no response for invocation \(index): \(String(describing: outcome))")
                return
            }
            let object = try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any]
            #expect(object?["statusCode"] as? Int == 200)
            #expect(object?["body"] as? String == "1158201444")
        }
        #expect(api.connectionCount == 1)
        await api.shutdown()
    }

    @Test func malformedEventIsReportedAndTheLoopGoesOn() async throws {
        let api = try await RuntimeAPIStandIn()
        let (process, _) = try Executables.start("verify", environment: [
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
        let (process, log) = try Executables.start("verify", environment: [
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

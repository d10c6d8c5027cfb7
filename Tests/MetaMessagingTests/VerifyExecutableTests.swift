import Foundation
import TestSupport
import Testing

/// `verify` as a user runs it: an event on stdin (or a file), one JSON document on stdout, an exit code.
@Suite struct VerifyExecutableTests {
    let token = "local-verify-token"
    var environment: [String: String] { ["META_WEBHOOK_VERIFY_TOKEN": token, "LOG_LEVEL": "debug"] }

    @Test(arguments: ["verify.json", "verify-http-api.json"])
    func sampleEventsAnswerTheChallenge(_ name: String) async throws {
        let result = try await Executables.run("verify", environment: environment, stdin: TestEvents.load(name))
        #expect(result.exitCode == 0)
        #expect(result.statusCode == 200)
        #expect(result.body == "1158201444")
        #expect((result.json?["headers"] as? [String: String])?["Content-Type"] == "text/plain")
        #expect(!result.stderr.contains(token))
        // Exactly one JSON document on stdout.
        #expect(result.stdout.split(separator: "\n").count == 1)
    }

    @Test func eventFileAsTheOnlyArgument() async throws {
        let path = Executables.packageRoot.appendingPathComponent("events/verify.json").path
        let result = try await Executables.run("verify", environment: environment, arguments: [path])
        #expect(result.exitCode == 0)
        #expect(result.body == "1158201444")
    }

    @Test func wrongTokenIsForbiddenAndNeverEchoed() async throws {
        let event = TestEvents.restGET(
            path: "/webhooks/meta",
            query: [
                "hub.mode": "subscribe", "hub.verify_token": "guess-\(token)", "hub.challenge": "42",
            ])
        let result = try await Executables.run("verify", environment: environment, stdin: event)
        #expect(result.exitCode == 0)
        #expect(result.statusCode == 403)
        #expect(!result.body.contains("42"))
        #expect(!result.stdout.contains(token))
        #expect(!result.stderr.contains(token))
    }

    @Test(arguments: [
        ["hub.verify_token": "local-verify-token", "hub.challenge": "42"],
        ["hub.mode": "subscribe", "hub.challenge": "42"],
        ["hub.mode": "subscribe", "hub.verify_token": "local-verify-token"],
        ["hub.mode": "unsubscribe", "hub.verify_token": "local-verify-token", "hub.challenge": "42"],
    ])
    func missingParameterOrAnotherModeIsABadRequest(_ query: [String: String]) async throws {
        let result = try await Executables.run("verify", environment: environment, stdin: TestEvents.restGET(path: "/webhooks/meta", query: query))
        #expect(result.exitCode == 0)
        #expect(result.statusCode == 400)
        #expect(!result.body.contains("42"))
    }

    @Test func missingTokenIsAConfigurationErrorNamingTheVariable() async throws {
        let result = try await Executables.run("verify", environment: [:], stdin: TestEvents.load("verify.json"))
        #expect(result.exitCode == 2)
        #expect(result.stdout.isEmpty)
        #expect(result.stderr.contains("META_WEBHOOK_VERIFY_TOKEN"))
        #expect(result.stderr.split(separator: "\n").count == 1)
    }

    @Test func invalidLogLevelIsAConfigurationError() async throws {
        let result = try await Executables.run(
            "verify", environment: ["META_WEBHOOK_VERIFY_TOKEN": token, "LOG_LEVEL": "loud"], stdin: TestEvents.load("verify.json"))
        #expect(result.exitCode == 2)
        #expect(result.stderr.contains("LOG_LEVEL"))
    }

    @Test(arguments: ["", "{", "[]", #"{"httpMethod":""}"#, #"{"path":"/webhooks/meta"}"#, "\u{FF}\u{FE}"])
    func malformedEventIsAFunctionError(_ input: String) async throws {
        let result = try await Executables.run("verify", environment: environment, stdin: Array(input.utf8))
        #expect(result.exitCode == 1)
        #expect(result.json?["errorType"] as? String == "InvalidEvent")
        #expect((result.json?["errorMessage"] as? String)?.isEmpty == false)
    }

    @Test func logsAreJSONLinesOnStderr() async throws {
        let result = try await Executables.run("verify", environment: environment, stdin: TestEvents.load("verify.json"))
        let lines = result.stderr.split(separator: "\n")
        #expect(!lines.isEmpty)
        for line in lines {
            let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            #expect(object?["level"] != nil)
            #expect(object?["message"] != nil)
        }
    }
}

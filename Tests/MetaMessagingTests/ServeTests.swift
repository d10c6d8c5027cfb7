import Foundation
import HTTPTransport
import MetaMessaging
import MetaWebhooks
import NIOHTTPTransport
import Synchronization
import TestSupport
import Testing

/// The local gateway as a process, with a real HTTP client.
@Suite struct ServeTests {
    typealias H = FunctionHarness

    static func freePort() -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    struct Gateway {
        let process: ChildProcess
        let log: URL
        let port: Int
        var base: String { "http://127.0.0.1:\(port)" }

        func logText() -> String { (try? String(contentsOf: log, encoding: .utf8)) ?? "" }
    }

    static let apiKey = "serve-test-key-0123456789abcdef"
    static let authorization = ("Authorization", "Bearer \(apiKey)")

    static func start(_ harness: H, extra: [String: String] = [:]) async throws -> Gateway {
        let port = freePort()
        let environment = harness.environment.merging([
            "PORT": String(port), "META_WEBHOOK_VERIFY_TOKEN": "local-verify-token", "LOG_LEVEL": "info",
            "SERVE_API_KEY": apiKey,
        ]) { $1 }.merging(extra) { $1 }
        let (process, log) = try Executables.start("serve", environment: environment)
        let gateway = Gateway(process: process, log: log, port: port)
        for _ in 0..<400 where !gateway.logText().contains("listening on") && process.isRunning {
            try await Task.sleep(for: .milliseconds(10))
        }
        return gateway
    }

    static func request(_ method: String, _ url: String, headers: [(String, String)] = [], body: [UInt8] = []) async throws -> OutboundResponse {
        try await NIOHTTPTransport().send(OutboundRequest(method: method, url: url, headers: headers, body: body), timeout: .seconds(20))
    }

    @Test func everyRouteAnswersThroughTheSameHandlers() async throws {
        let harness = try await H.make(.file)
        let gateway = try await Self.start(
            harness,
            extra: [
                "META_APP_ID": "100000000000001", "META_REDIRECT_URI": "http://localhost:3003/external/meta/callback",
                "OAUTH_STATE_SECRET": "local-state-secret",
            ])
        defer { gateway.process.terminate() }
        let verify = try await Self.request("GET", "\(gateway.base)/webhooks/meta?hub.mode=subscribe&hub.verify_token=local-verify-token&hub.challenge=8675309")
        #expect(verify.status == 200)
        #expect(String(decoding: verify.body, as: UTF8.self) == "8675309")
        #expect(verify.header("Content-Type") == "text/plain")

        let authURL = try await Self.request(
            "GET", "\(gateway.base)/external/meta/auth-url?businessId=B0100001&locationId=L0100001",
            headers: [Self.authorization])
        #expect(authURL.status == 200)
        #expect(String(decoding: authURL.body, as: UTF8.self).contains("dialog/oauth"))

        let denied = try await Self.request("GET", "\(gateway.base)/external/meta/callback?error=access_denied&state=bogus")
        #expect(denied.status == 400)

        let send = try await Self.request(
            "POST", "\(gateway.base)/messages", headers: [("Content-Type", "application/json"), Self.authorization],
            body: Array(#"{"businessId":"B0100001","platform":"whatsapp","recipientId":"1650","message":{"text":"hi"}}"#.utf8))
        #expect(send.status == 200)
        #expect(await harness.graph.messages.count == 1)

        #expect(try await Self.request("GET", "\(gateway.base)/nowhere").status == 404)
        #expect(try await Self.request("DELETE", "\(gateway.base)/webhooks/meta").status == 405)
        #expect(gateway.logText().contains("GET /webhooks/meta 200"))
        #expect(!gateway.logText().contains("local-verify-token"))
        await harness.shutdown()
    }

    @Test func aSignedWebhookReachesReceiveByteForByte() async throws {
        let harness = try await H.make(.file)
        let gateway = try await Self.start(harness)
        defer { gateway.process.terminate() }
        // Meta's escaping: `\/` and `\uXXXX`; a re-serialised body would not match the signature.
        let body = Array(H.messaging(events: [H.textEvent(mid: "m_serve", text: "caf\\u00e9 https:\\/\\/example.com")]).utf8)
        let signature = WebhookSignature(appSecret: H.appSecret).header(for: body)
        let response = try await Self.request(
            "POST", "\(gateway.base)/webhooks/meta",
            headers: [("Content-Type", "application/json"), ("X-Hub-Signature-256", signature)], body: body)
        #expect(response.status == 200)
        let texts = await harness.graph.messages.compactMap { ($0.body?["message"] as? [String: Any])?["text"] as? String }
        #expect(texts == ["Echo: café https://example.com"])
        let forged = try await Self.request(
            "POST", "\(gateway.base)/webhooks/meta",
            headers: [("X-Hub-Signature-256", signature)], body: body + [0x20])
        #expect(forged.status == 401)
        await harness.shutdown()
    }

    /// `scripts/sample-webhook --post`, as the docs tell a newcomer to try a comment with
    /// `scripts/serve --demo`: the sample as written is past the 7 days a private reply may
    /// answer (its times are fixed), and the same sample as of now is answered by one.
    @Test func aSampleCommentPostedAsOfNowIsAnsweredByAPrivateReply() async throws {
        let harness = try await H.make(.file)
        let gateway = try await Self.start(harness, extra: ["COMMENT_REPLIES": "private"])
        defer { gateway.process.terminate() }
        let sample = Executables.packageRoot.appendingPathComponent("events/instagram-comment.json").path
        let body = try #require(try JSONSerialization.jsonObject(with: Data(Executables.event("instagram-comment.json"))) as? [String: Any])
        let headers = try #require(body["headers"] as? [String: String])
        let asWritten = try await Self.request(
            "POST", "\(gateway.base)/webhooks/meta",
            headers: [("X-Hub-Signature-256", try #require(headers["x-hub-signature-256"]))], body: Array(try #require(body["body"] as? String).utf8))
        #expect(asWritten.status == 200)
        #expect(String(decoding: asWritten.body, as: UTF8.self).contains(#""skipped":1"#))

        var environment = ["PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin", "META_APP_SECRET": H.appSecret]
        for name in ["LD_PRELOAD", "CLOCK_AHEAD_SECONDS"] { environment[name] = ProcessInfo.processInfo.environment[name] }
        let script = Executables.packageRoot.appendingPathComponent("scripts/sample-webhook").path
        let frozen = environment
        let posted = try await Executables.offPool {
            try ChildProcess.run(
                "/usr/bin/env", arguments: ["python3", script, sample, "--post", "\(gateway.base)/webhooks/meta"], environment: frozen, timeout: 60)
        }
        #expect(posted.exitCode == 0, "\(posted.stdout) \(posted.stderr)")
        #expect(posted.stdout.hasPrefix("200 "))
        let recipients = await harness.graph.messages.compactMap { $0.body?["recipient"] as? [String: Any] }
        #expect(recipients.compactMap { $0["comment_id"] as? String } == ["17858893269000001"])
        await harness.shutdown()
    }

    @Test func tooLargeConcurrentAndShutdown() async throws {
        let harness = try await H.make(.file)
        let gateway = try await Self.start(harness)
        let large = try await Self.request("POST", "\(gateway.base)/webhooks/meta", body: [UInt8](repeating: 0x61, count: 7 * 1024 * 1024))
        #expect(large.status == 413)

        let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
            for index in 0..<24 {
                group.addTask {
                    try await Self.request("GET", "\(gateway.base)/webhooks/meta?hub.mode=subscribe&hub.verify_token=local-verify-token&hub.challenge=\(index)")
                        .status
                }
            }
            return try await group.reduce(into: [Int]()) { $0.append($1) }
        }
        #expect(statuses.count == 24)
        #expect(statuses.allSatisfy { $0 == 200 })

        kill(gateway.process.processIdentifier, SIGTERM)
        let stopped = ContinuousClock.now
        await Executables.wait(gateway.process)
        #expect(ContinuousClock.now - stopped < .seconds(5))
        #expect(gateway.process.terminationStatus == 0)
        #expect(gateway.logText().contains("stopped"))
        await harness.shutdown()
    }

    @Test func aRequestInFlightFinishesBeforeShutdown() async throws {
        let harness = try await H.make(.file)
        let asked = Mutex(false)
        let agent = try await LoopbackServer { _ in
            asked.withLock { $0 = true }
            try? await Task.sleep(for: .milliseconds(800))
            return .json(200, #"{"reply":"worth the wait"}"#)
        }
        let gateway = try await Self.start(harness, extra: ["AGENT_BACKEND": "http", "AGENT_HTTP_URL": agent.baseURL])
        let body = Array(H.messaging(events: [H.textEvent(mid: "m_inflight", text: "slow")]).utf8)
        let signature = WebhookSignature(appSecret: H.appSecret).header(for: body)
        async let response = Self.request("POST", "\(gateway.base)/webhooks/meta", headers: [("X-Hub-Signature-256", signature)], body: body)
        // The signal comes while the agent works on the request (not before serve has read it).
        for _ in 0..<1000 where !asked.withLock({ $0 }) { try await Task.sleep(for: .milliseconds(10)) }
        #expect(asked.withLock { $0 })
        kill(gateway.process.processIdentifier, SIGTERM)
        #expect(try await response.status == 200)
        await Executables.wait(gateway.process)
        #expect(gateway.process.terminationStatus == 0)
        #expect(await harness.graph.messages.count == 1)
        await agent.shutdown()
        await harness.shutdown()
    }

    @Test func aTakenPortIsAClearError() async throws {
        let harness = try await H.make(.file)
        let first = try await Self.start(harness)
        defer { first.process.terminate() }
        let second = try await Executables.run("serve", environment: harness.environment.merging(["PORT": String(first.port)]) { $1 })
        #expect(second.exitCode == 2)
        #expect(second.stderr.contains("already in use"))
        #expect(second.stderr.contains("PORT"))
        await harness.shutdown()
    }

    @Test func aFunctionWithoutItsConfigurationAnswers503NamingTheVariable() async throws {
        let harness = try await H.make(.file)
        let gateway = try await Self.start(harness)
        defer { gateway.process.terminate() }
        let response = try await Self.request(
            "GET", "\(gateway.base)/external/meta/auth-url?businessId=B1&locationId=L1",
            headers: [Self.authorization])
        #expect(response.status == 503)
        #expect(String(decoding: response.body, as: UTF8.self).contains("META_APP_ID"))
        await harness.shutdown()
    }
}

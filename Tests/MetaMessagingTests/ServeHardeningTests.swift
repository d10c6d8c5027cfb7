import Foundation
import HTTPTransport
import LocalHTTPServer
import MetaMessaging
import MetaWebhooks
import TestSupport
import Testing

/// A raw TCP client, to send what no well-behaved HTTP client sends.
struct RawConnection {
    let fd: Int32

    init(port: Int, receiveTimeout: Duration = .seconds(5)) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw POSIXError(.EMFILE) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(port).bigEndian
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else {
            close(fd)
            throw POSIXError(.ECONNREFUSED)
        }
        var timeout = timeval(
            tv_sec: Int(receiveTimeout.components.seconds),
            tv_usec: Int(receiveTimeout.components.attoseconds / 1_000_000_000_000))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    func send(_ text: String) {
        let bytes = Array(text.utf8)
        _ = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    /// Everything until the peer closes, the timeout passes, or `until` is in the text.
    func receive(until marker: String? = nil) -> (text: String, closed: Bool) {
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count == 0 { return (String(decoding: bytes, as: UTF8.self), true) }
            if count < 0 { return (String(decoding: bytes, as: UTF8.self), false) }
            bytes += buffer[0..<count]
            if let marker, String(decoding: bytes, as: UTF8.self).contains(marker) { return (String(decoding: bytes, as: UTF8.self), false) }
        }
    }

    func shutdown() { close(fd) }
}

/// The local HTTP server's connection rules, in process with short limits, and the gateway's
/// credential as a process.
@Suite struct ServeHardeningTests {
    static func server(_ limits: HTTPServer.Limits) async throws -> HTTPServer {
        try await HTTPServer(limits: limits) { request in
            HTTPServer.Response(status: 200, headers: [("Content-Type", "text/plain")], body: Array("ok \(request.body.count)\n".utf8))
        }
    }

    @Test func aMalformedRequestGets400AndItsConnectionIsClosed() async throws {
        let server = try await Self.server(.init())
        let connection = try RawConnection(port: server.port)
        defer { connection.shutdown() }
        connection.send("THIS IS NOT HTTP\r\n\r\n")
        let (text, closed) = await Executables.offPool { connection.receive() }
        #expect(text.hasPrefix("HTTP/1.1 400"))
        #expect(closed)
        await server.shutdown()
    }

    @Test func aSlowHeadIsDroppedAndAnIdleConnectionClosed() async throws {
        let server = try await Self.server(.init(headTimeout: .milliseconds(300), idleTimeout: .milliseconds(900)))
        // Half a head, then nothing: closed after the head timeout, unanswered.
        let slow = try RawConnection(port: server.port, receiveTimeout: .seconds(25))
        defer { slow.shutdown() }
        slow.send("GET / HTTP/1.1\r\nHost: x\r\n")
        let start = ContinuousClock.now
        let (text, closed) = await Executables.offPool { slow.receive() }
        #expect(closed)
        #expect(text.isEmpty)
        // Closed by the 0.3 s head timeout, long before the 60 s idle one (bound loose for a loaded CI machine).
        #expect(ContinuousClock.now - start < .seconds(20))

        // A whole request is answered; the kept-alive connection then idles and is closed.
        let idle = try RawConnection(port: server.port, receiveTimeout: .seconds(25))
        defer { idle.shutdown() }
        idle.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        let answered = await Executables.offPool { idle.receive(until: "ok 0\n") }
        #expect(answered.text.hasPrefix("HTTP/1.1 200"))
        let afterIdle = await Executables.offPool { idle.receive() }
        #expect(afterIdle.closed)
        await server.shutdown()
    }

    @Test func aKeptAliveConnectionPastTheHeadTimeoutTakesItsNextRequest() async throws {
        // The connection's one timer, set for the head's 0.3 s, finds the deadline moved to the
        // idle timeout (10 s, far from anything a loaded machine stretches) and waits on.
        let server = try await Self.server(.init(headTimeout: .milliseconds(300), idleTimeout: .seconds(10)))
        let connection = try RawConnection(port: server.port, receiveTimeout: .seconds(25))
        defer { connection.shutdown() }
        for round in 0..<3 {
            connection.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            let answer = await Executables.offPool { connection.receive(until: "ok 0\n") }
            #expect(answer.text.hasPrefix("HTTP/1.1 200"), "round \(round)")
            #expect(!answer.closed)
            try await Task.sleep(for: .milliseconds(700))
        }
        await server.shutdown()
    }

    @Test func expectContinueWithATooLargeBodyIsRefusedAtOnce() async throws {
        let server = try await Self.server(.init(maxBodyBytes: 1024))
        let large = try RawConnection(port: server.port)
        defer { large.shutdown() }
        large.send("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\nExpect: 100-continue\r\n\r\n")
        let refused = await Executables.offPool { large.receive() }
        #expect(refused.text.hasPrefix("HTTP/1.1 413"))
        #expect(refused.closed)

        let small = try RawConnection(port: server.port)
        defer { small.shutdown() }
        small.send("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        let interim = await Executables.offPool { small.receive(until: "\r\n\r\n") }
        #expect(interim.text.hasPrefix("HTTP/1.1 100 Continue"))
        small.send("hello")
        let final = await Executables.offPool { small.receive(until: "ok 5\n") }
        #expect(final.text.contains("HTTP/1.1 200"))
        await server.shutdown()
    }

    @Test func elevenHundredIdleConnectionsDoNotStopARealRequest() async throws {
        let server = try await Self.server(.init(maxConnections: 512))
        var idle: [RawConnection] = []
        defer { for connection in idle { connection.shutdown() } }
        for _ in 0..<1100 { idle.append(try RawConnection(port: server.port)) }
        // Let the server accept them all.
        for _ in 0..<200 where server.acceptedConnections < 1100 { try await Task.sleep(for: .milliseconds(20)) }
        #expect(server.acceptedConnections == 1100)
        #expect(server.openConnections <= 512)
        let response = try await NIOHTTPTransportClient.get("http://127.0.0.1:\(server.port)/")
        #expect(response.status == 200)
        await server.shutdown()
    }

    // MARK: The gateway's credential (a process)

    @Test func tenantRoutesNeedTheServeCredential() async throws {
        let harness = try await FunctionHarness.make(.file)
        let gateway = try await ServeTests.start(
            harness,
            extra: [
                "META_APP_ID": "100000000000001", "META_REDIRECT_URI": "http://localhost:3003/external/meta/callback",
                "OAUTH_STATE_SECRET": "local-state-secret",
            ])
        defer { gateway.process.terminate() }
        let url = "\(gateway.base)/external/meta/auth-url?businessId=B0100001&locationId=L0100001"
        let send = "\(gateway.base)/messages"
        let body = Array(#"{"businessId":"B0100001","platform":"whatsapp","recipientId":"1650","message":{"text":"hi"}}"#.utf8)

        #expect(try await ServeTests.request("GET", url).status == 401)
        #expect(try await ServeTests.request("GET", url, headers: [("Authorization", "Bearer not-the-key-0123456789")]).status == 401)
        #expect(try await ServeTests.request("GET", url, headers: [("Authorization", "Basic \(ServeTests.apiKey)")]).status == 401)
        #expect(try await ServeTests.request("GET", url, headers: [ServeTests.authorization]).status == 200)
        #expect(try await ServeTests.request("POST", send, body: body).status == 401)
        #expect(await harness.graph.messages.isEmpty)
        #expect(try await ServeTests.request("POST", send, headers: [ServeTests.authorization], body: body).status == 200)
        #expect(await harness.graph.messages.count == 1)
        let disconnect = "\(gateway.base)/external/meta/connections/B0100001/L0100001"
        #expect(try await ServeTests.request("DELETE", disconnect).status == 401)
        #expect(try await ServeTests.request("DELETE", disconnect, headers: [ServeTests.authorization]).status == 200)
        // Meta's routes stay open.
        let verify = try await ServeTests.request("GET", "\(gateway.base)/webhooks/meta?hub.mode=subscribe&hub.verify_token=local-verify-token&hub.challenge=7")
        #expect(verify.status == 200)
        #expect(!gateway.logText().contains(ServeTests.apiKey))
        await harness.shutdown()
    }

    @Test func withoutAConfiguredKeyServeMakesOneAndPrintsIt() async throws {
        let harness = try await FunctionHarness.make(.file)
        let gateway = try await ServeTests.start(
            harness,
            extra: [
                "SERVE_API_KEY": "", "META_APP_ID": "100000000000001",
                "META_REDIRECT_URI": "http://localhost:3003/external/meta/callback", "OAUTH_STATE_SECRET": "local-state-secret",
            ])
        defer { gateway.process.terminate() }
        let log = gateway.logText()
        let line = try #require(log.split(separator: "\n").first { $0.contains("export SERVE_API_KEY=") })
        let key = String(line.split(separator: "=").last ?? "")
        #expect(key.count == 64)
        #expect(log.contains("curl -H \"Authorization: Bearer $SERVE_API_KEY\""))
        let url = "\(gateway.base)/external/meta/auth-url?businessId=B0100001&locationId=L0100001"
        #expect(try await ServeTests.request("GET", url).status == 401)
        #expect(try await ServeTests.request("GET", url, headers: [("Authorization", "Bearer \(key)")]).status == 200)
        // Printed once, and never in a log line.
        #expect(log.components(separatedBy: key).count == 2)
        await harness.shutdown()
    }

    @Test func aShortKeyOrABadPortIsAConfigurationError() async throws {
        let harness = try await FunctionHarness.make(.file)
        let short = try await Executables.run("serve", environment: harness.environment.merging(["SERVE_API_KEY": "short"]) { $1 })
        #expect(short.exitCode == 2)
        #expect(short.stderr.contains("SERVE_API_KEY"))
        #expect(!short.stderr.contains("short\n"))
        for port in ["abc", "70000", "-1", "1e3"] {
            let bad = try await Executables.run("serve", environment: harness.environment.merging(["PORT": port, "SERVE_API_KEY": ServeTests.apiKey]) { $1 })
            #expect(bad.exitCode == 2)
            #expect(bad.stderr.contains("PORT"))
        }
        await harness.shutdown()
    }
}

/// A plain GET through NIOHTTPTransport (a real client, on a fresh connection).
enum NIOHTTPTransportClient {
    static func get(_ url: String) async throws -> OutboundResponse {
        try await ServeTests.request("GET", url)
    }
}

import Foundation
import HTTPTransport
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTPTransport
import NIOPosix
import NIOSSL
import TestSupport
import Testing

/// The outbound HTTP client against loopback servers that answer scripted bytes, over plain
/// TCP and over TLS with a certificate authority made for the test (openssl).
@Suite struct NIOHTTPTransportTests {
    @Test func keptAliveConnectionsAreReusedAndClosedOnesAreNot() async throws {
        let server = try await ScriptedServer { _ in .ok("hello") }
        let transport = NIOHTTPTransport()
        for _ in 0..<3 {
            let response = try await transport.send(OutboundRequest(method: "GET", url: "\(server.base)/a?b=c"), timeout: .seconds(5))
            #expect(response.status == 200)
            #expect(String(decoding: response.body, as: UTF8.self) == "hello")
        }
        #expect(server.connections == 1)
        #expect(server.requestLines == Array(repeating: "GET /a?b=c HTTP/1.1", count: 3))

        let closing = try await ScriptedServer { _ in .raw("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", close: true) }
        for _ in 0..<2 {
            let response = try await transport.send(OutboundRequest(method: "GET", url: closing.base), timeout: .seconds(5))
            #expect(String(decoding: response.body, as: UTF8.self) == "ok")
        }
        #expect(closing.connections == 2)
        #expect(closing.requestLines == ["GET / HTTP/1.1", "GET / HTTP/1.1"])
        await server.shutdown()
        await closing.shutdown()
    }

    @Test func aFloodWaitsForItsHostsFewConnectionsAndAWaitHasADeadline() async throws {
        let inFlight = NIOLockedValueBox((now: 0, most: 0))
        let server = try await LoopbackServer { _ in
            inFlight.withLockedValue {
                $0.now += 1; $0.most = max($0.most, $0.now)
            }
            try? await Task.sleep(for: .milliseconds(150))
            inFlight.withLockedValue { $0.now -= 1 }
            return .json(200, "{}")
        }
        let transport = NIOHTTPTransport(tls: .makeClientConfiguration(), maxConnectionsPerHost: 2)
        let statuses = await withTaskGroup(of: Int.self) { group in
            for _ in 0..<8 {
                group.addTask {
                    (try? await transport.send(OutboundRequest(method: "GET", url: server.baseURL + "/"), timeout: .seconds(20)))?.status ?? 0
                }
            }
            return await group.reduce(into: [Int]()) { $0.append($1) }
        }
        // Every request answered, on two connections, each handed from one request to the next.
        #expect(statuses == Array(repeating: 200, count: 8))
        #expect(server.acceptedConnections == 2)
        #expect(inFlight.withLockedValue { $0.most } == 2)
        await server.shutdown()

        // One connection, busy for 2 s: a request that cannot have it before its deadline
        // times out, saying why; the next, with time enough, gets it once it is free.
        let slow = try await LoopbackServer { _ in
            try? await Task.sleep(for: .seconds(2))
            return .json(200, "{}")
        }
        let single = NIOHTTPTransport(tls: .makeClientConfiguration(), maxConnectionsPerHost: 1)
        let request = OutboundRequest(method: "GET", url: slow.baseURL + "/")
        let first = Task { try await single.send(request, timeout: .seconds(20)).status }
        for _ in 0..<200 where slow.acceptedConnections < 1 { try await Task.sleep(for: .milliseconds(10)) }
        let start = ContinuousClock.now
        let waited = await failure(single, request, timeout: .milliseconds(300))
        #expect(waited?.kind == .timeout)
        #expect(waited?.message.contains("connections to it were busy") == true)
        #expect(ContinuousClock.now - start < .seconds(1.9))
        #expect(try await single.send(request, timeout: .seconds(20)).status == 200)
        #expect(try await first.value == 200)
        #expect(slow.acceptedConnections == 1)
        await slow.shutdown()
    }

    @Test func bodiesHeadersAndChunkedAnswersArriveWhole() async throws {
        let server = try await ScriptedServer { request in
            #expect(request.contains("\r\nContent-Length: 11\r\n"))
            #expect(request.contains("\r\nX-Amz-Target: DynamoDB_20120810.GetItem\r\n"))
            #expect(request.contains("\r\nHost: 127.0.0.1:"))
            #expect(request.hasSuffix("\r\n\r\nhello world"))
            return .raw("HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\nX-Answer: yes\r\n\r\n5\r\nchunk\r\n6\r\ned all\r\n0\r\n\r\n")
        }
        let response = try await NIOHTTPTransport().send(
            OutboundRequest(method: "POST", url: server.base + "/", headers: [("X-Amz-Target", "DynamoDB_20120810.GetItem")], body: Array("hello world".utf8)),
            timeout: .seconds(5))
        #expect(response.status == 201)
        #expect(response.header("x-answer") == "yes")
        #expect(String(decoding: response.body, as: UTF8.self) == "chunked all")
        await server.shutdown()
    }

    @Test func aRedirectIsReturnedNotFollowed() async throws {
        let server = try await ScriptedServer { _ in .raw("HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:9/elsewhere\r\nContent-Length: 0\r\n\r\n") }
        let response = try await NIOHTTPTransport().send(
            OutboundRequest(method: "GET", url: server.base + "/me?access_token=secret-token"), timeout: .seconds(5))
        #expect(response.status == 302)
        #expect(server.connections == 1)
        await server.shutdown()
    }

    @Test func slowLargeAndAbsentServersAreTheirOwnErrors() async throws {
        let silent = try await ScriptedServer { _ in .nothing }
        let start = ContinuousClock.now
        let error1 = await failure(
            NIOHTTPTransport(), OutboundRequest(method: "GET", url: silent.base + "/?access_token=secret-token"), timeout: .milliseconds(300))
        #expect(error1?.kind == .timeout)
        #expect(error1?.message == "127.0.0.1 did not answer in time")
        #expect(ContinuousClock.now - start < .seconds(3))

        let large = try await ScriptedServer { _ in .ok(String(repeating: "x", count: 2_000_000)) }
        let error2 = await failure(NIOHTTPTransport(maxResponseBytes: 1_000_000), OutboundRequest(method: "GET", url: large.base), timeout: .seconds(5))
        #expect(error2?.kind == .tooLarge)

        let port = large.port
        await large.shutdown()
        let error3 = await failure(NIOHTTPTransport(), OutboundRequest(method: "GET", url: "http://127.0.0.1:\(port)/"), timeout: .seconds(5))
        #expect(error3?.kind == .connection)
        #expect(error3?.message.contains("secret") == false)

        let dropping = try await ScriptedServer { _ in .raw("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", close: true) }
        let error4 = await failure(NIOHTTPTransport(), OutboundRequest(method: "GET", url: dropping.base), timeout: .seconds(5))
        #expect(error4?.kind == .connection)
        await silent.shutdown()
        await dropping.shutdown()
    }

    // MARK: Hostile servers (issue 35): each ends in an error of its own, soon, and the client
    // stops reading; none hangs, traps or grows without bound.

    @Test func headersThatNeverEndAreRefusedWithoutReadingThemAll() async throws {
        let line = "X-Pad: " + String(repeating: "a", count: 1000) + "\r\n"
        let server = try await ScriptedServer { _ in .stream(head: "HTTP/1.1 200 OK\r\n", piece: line, times: 100_000) }
        let error = await failure(NIOHTTPTransport(), OutboundRequest(method: "GET", url: server.base + "/"), timeout: .seconds(20))
        #expect(error != nil && error?.kind != .timeout, "\(String(describing: error))")
        // 100 MB offered; the client hung up after a small part of it.
        #expect(server.streamed.withLockedValue { $0 } < 20_000_000)
        await server.shutdown()
    }

    @Test func aGigabyteChunkedBodyIsCutAtTheLimit() async throws {
        let piece = "10000\r\n" + String(repeating: "x", count: 65536) + "\r\n"
        // 16,384 chunks of 64 KiB: one gigabyte, never ending before the client's limit.
        let server = try await ScriptedServer { _ in
            .stream(head: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", piece: piece, times: 16384)
        }
        let error = await failure(NIOHTTPTransport(maxResponseBytes: 8 * 1024 * 1024), OutboundRequest(method: "GET", url: server.base), timeout: .seconds(30))
        #expect(error?.kind == .tooLarge, "\(String(describing: error))")
        #expect(server.streamed.withLockedValue { $0 } < 100_000_000)
        await server.shutdown()
    }

    @Test func aChunkSizeThatOverflowsIsAnError() async throws {
        for size in ["FFFFFFFFFFFFFFFFFFFFFFFF", "-1", "7FFFFFFFFFFFFFFF"] {
            let server = try await ScriptedServer { _ in .raw("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\(size)\r\nabc\r\n", close: true) }
            let error = await failure(NIOHTTPTransport(), OutboundRequest(method: "GET", url: server.base), timeout: .seconds(10))
            #expect(error != nil && error?.kind != .timeout, "\(size): \(String(describing: error))")
            await server.shutdown()
        }
    }

    @Test func aServerThatClosesAKeptAliveConnectionQuietlyCostsNoRequest() async throws {
        // It answers as if the connection stays open, then closes it.
        let server = try await ScriptedServer { _ in .raw("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", close: true) }
        let transport = NIOHTTPTransport()
        for _ in 0..<3 {
            let response = try await transport.send(OutboundRequest(method: "POST", url: server.base + "/", body: Array("{}".utf8)), timeout: .seconds(10))
            #expect(response.status == 200)
        }
        // Each request on a connection of its own: none was lost on a closed one.
        #expect(server.requestLines.count == 3)
        #expect(server.connections == 3)
        await server.shutdown()
    }

    @Test func aTLSHandshakeThatStallsTimesOut() async throws {
        // A server that takes the connection and never says a word of TLS.
        let server = try await ScriptedServer { _ in .nothing }
        let error = await failure(
            NIOHTTPTransport(), OutboundRequest(method: "GET", url: "https://localhost:\(server.port)/?access_token=secret-token"),
            timeout: .milliseconds(500))
        #expect(error?.kind == .timeout, "\(String(describing: error))")
        #expect(error?.message.contains("secret-token") == false)
        await server.shutdown()
    }

    @Test func aThousandRequestsAtOnceToOneHostAreAllAnsweredOnItsFewConnections() async throws {
        let server = try await ScriptedServer { request in .ok(String(request.prefix { $0 != " " })) }
        let transport = NIOHTTPTransport(tls: .makeClientConfiguration(), maxConnectionsPerHost: 8)
        let answered = await withTaskGroup(of: Bool.self) { group in
            for index in 0..<1000 {
                group.addTask {
                    let response = try? await transport.send(OutboundRequest(method: "GET", url: server.base + "/\(index)"), timeout: .seconds(60))
                    return response?.status == 200 && response?.body == Array("GET".utf8)
                }
            }
            return await group.reduce(0) { $0 + ($1 ? 1 : 0) }
        }
        #expect(answered == 1000)
        #expect(server.connections <= 8)
        #expect(server.requestLines.count == 1000)
        await server.shutdown()
    }

    @Test(arguments: ["ftp://example.com/", "example.com/x", "http://", "http://user:pass@example.com/", "http://example.com:99999/", "https://127.0.0.1/"])
    func whatIsNotAnHTTPURLWithANameIsRefused(_ url: String) async {
        let error5 = await failure(NIOHTTPTransport(), OutboundRequest(method: "GET", url: url), timeout: .seconds(1))
        #expect(error5?.kind == .other)
        #expect(error5?.message.contains("pass") == false)
    }

    @Test func overTLSTheCertificateAndTheServersNameAreChecked() async throws {
        let authority = try TestAuthority()
        let server = try await ScriptedServer(tls: authority.serverContext()) { request in
            #expect(request.hasPrefix("GET /v25.0/me?fields=id HTTP/1.1\r\n"))
            return .ok(#"{"id":"1"}"#)
        }
        var trusting = TLSConfiguration.makeClientConfiguration()
        trusting.trustRoots = .file(authority.caFile)
        let transport = NIOHTTPTransport(tls: trusting)
        for _ in 0..<2 {
            let response = try await transport.send(
                OutboundRequest(method: "GET", url: "https://localhost:\(server.port)/v25.0/me?fields=id"), timeout: .seconds(10))
            #expect(response.status == 200)
            #expect(String(decoding: response.body, as: UTF8.self) == #"{"id":"1"}"#)
        }
        #expect(server.connections == 1)

        // The system's trust roots do not know the test's authority.
        let error6 = await failure(
            NIOHTTPTransport(),
            OutboundRequest(method: "GET", url: "https://localhost:\(server.port)/?access_token=secret-token"), timeout: .seconds(10))
        #expect(error6?.kind == .connection)
        #expect(error6?.message.contains("TLS") == true, "\(error6?.message ?? "")")
        #expect(error6?.message.contains("secret-token") == false)
        #expect(server.requestLines.count == 2)

        // A certificate for another name is refused, even from a trusted authority.
        let other = try await ScriptedServer(tls: authority.serverContext(name: "other.example")) { _ in .ok("no") }
        await #expect(throws: TransportError.self) {
            _ = try await transport.send(OutboundRequest(method: "GET", url: "https://localhost:\(other.port)/"), timeout: .seconds(10))
        }
        #expect(other.requestLines.isEmpty)
        await server.shutdown()
        await other.shutdown()
    }
}

/// The error a request ended with (nil when it was answered).
func failure(_ transport: NIOHTTPTransport, _ request: OutboundRequest, timeout: Duration) async -> TransportError? {
    do {
        _ = try await transport.send(request, timeout: timeout)
        return nil
    } catch {
        return error
    }
}

/// A loopback server whose answer to each request is scripted as bytes.
final class ScriptedServer: Sendable {
    enum Reply: Sendable {
        case raw(String, close: Bool = false)
        /// Never answers.
        case nothing
        /// `head`, then `piece` `times` over, each write waiting for the one before (what a
        /// hostile server streams until the client hangs up).
        case stream(head: String, piece: String, times: Int)

        static func ok(_ body: String) -> Reply { .raw("HTTP/1.1 200 OK\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)") }
    }

    private let channel: any Channel
    private let seen = NIOLockedValueBox<(connections: Int, requests: [String])>((0, []))
    /// Bytes of streamed replies the client took (written before it hung up).
    let streamed = NIOLockedValueBox(0)
    let port: Int
    var base: String { "http://127.0.0.1:\(port)" }
    var connections: Int { seen.withLockedValue { $0.connections } }
    var requestLines: [String] { seen.withLockedValue { $0.requests.map { String($0.prefix { $0 != "\r\n" }) } } }

    init(tls: NIOSSLContext? = nil, answer: @escaping @Sendable (String) -> Reply) async throws {
        let seen = self.seen
        let streamed = self.streamed
        channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tls { try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls)) }
                    try channel.pipeline.syncOperations.addHandler(Handler(seen: seen, streamed: streamed, answer: answer))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        port = channel.localAddress?.port ?? 0
    }

    func shutdown() async { try? await channel.close() }

    /// Reads a request (head, and a body of Content-Length bytes), then writes its reply.
    final class Handler: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        let seen: NIOLockedValueBox<(connections: Int, requests: [String])>
        let streamed: NIOLockedValueBox<Int>
        let answer: @Sendable (String) -> Reply
        let buffered = NIOLockedValueBox<[UInt8]>([])

        init(
            seen: NIOLockedValueBox<(connections: Int, requests: [String])>, streamed: NIOLockedValueBox<Int>,
            answer: @escaping @Sendable (String) -> Reply
        ) {
            self.seen = seen
            self.streamed = streamed
            self.answer = answer
        }

        func channelActive(context: ChannelHandlerContext) {
            seen.withLockedValue { $0.connections += 1 }
            context.fireChannelActive()
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            var bytes = unwrapInboundIn(data)
            let all = buffered.withLockedValue { buffered in
                buffered += bytes.readBytes(length: bytes.readableBytes) ?? []
                return buffered
            }
            let text = String(decoding: all, as: UTF8.self)
            guard let end = text.range(of: "\r\n\r\n") else { return }
            let head = text[..<end.lowerBound]
            let length =
                head.split(separator: "\r\n").first { $0.lowercased().hasPrefix("content-length:") }
                .flatMap { Int($0.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces)) } ?? 0
            guard all.count >= Array(text[..<end.upperBound].utf8).count + length else { return }
            buffered.withLockedValue { $0 = [] }
            seen.withLockedValue { $0.requests.append(text) }
            switch answer(text) {
            case .nothing: return
            case .raw(let reply, let close):
                context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: reply)), promise: nil)
                if close { context.close(promise: nil) }
            case .stream(let head, let piece, let times):
                context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: head)), promise: nil)
                let channel = context.channel
                let buffer = ByteBuffer(string: piece)
                let streamed = self.streamed
                @Sendable func write(_ index: Int) {
                    guard index < times, channel.isActive else { return }
                    channel.writeAndFlush(buffer).whenComplete { result in
                        guard case .success = result else { return }
                        streamed.withLockedValue { $0 += buffer.readableBytes }
                        write(index + 1)
                    }
                }
                write(0)
            }
        }
    }
}

/// A certificate authority made for one test with openssl, and server certificates it signs.
struct TestAuthority {
    let folder: String
    var caFile: String { folder + "/ca.pem" }

    init() throws {
        folder = NSTemporaryDirectory() + "tls-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        try Self.openssl(
            [
                "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
                "-subj", "/CN=meta-messaging test authority",
            ], in: folder)
    }

    /// A server context for a certificate naming `name`, signed by this authority.
    func serverContext(name: String = "localhost") throws -> NIOSSLContext {
        let base = "server-\(name)"
        try "subjectAltName=DNS:\(name)\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n".write(
            toFile: "\(folder)/\(base).ext", atomically: true, encoding: .utf8)
        try Self.openssl(
            [
                "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "\(base).key", "-out", "\(base).csr", "-subj",
                "/CN=\(name)",
            ],
            in: folder)
        try Self.openssl(
            [
                "x509", "-req", "-in", "\(base).csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "\(base).pem", "-days", "2", "-extfile",
                "\(base).ext",
            ], in: folder)
        let configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: try NIOSSLCertificate.fromPEMFile("\(folder)/\(base).pem").map { .certificate($0) },
            privateKey: .privateKey(try NIOSSLPrivateKey(file: "\(folder)/\(base).key", format: .pem)))
        return try NIOSSLContext(configuration: configuration)
    }

    static func openssl(_ arguments: [String], in folder: String) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["openssl"] + arguments
        process.currentDirectoryURL = URL(fileURLWithPath: folder)
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw CocoaError(.fileWriteUnknown) }
    }
}

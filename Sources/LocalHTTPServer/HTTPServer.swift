#if canImport(Glibc)
import Glibc
#endif
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix

/// A small HTTP/1.1 server on SwiftNIO with an async handler per request: the local gateway
/// (`serve`) and the tests' loopback stand-ins are built on it. Bodies over `maxBodyBytes` are
/// answered 413 without being buffered further.
public final class HTTPServer: Sendable {
    public struct Request: Sendable {
        public let method: String
        public let uri: String
        public let headers: [(String, String)]
        public let body: [UInt8]
        public let remoteAddress: String?

        public var path: String { String(uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? "") }
        public var queryString: String {
            let parts = uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
            return parts.count > 1 ? String(parts[1]) : ""
        }
        public func header(_ name: String) -> String? {
            let wanted = name.lowercased()
            return headers.first { $0.0.lowercased() == wanted }?.1
        }
    }

    public struct Response: Sendable {
        public var status: Int
        public var headers: [(String, String)]
        public var body: [UInt8]

        public init(status: Int, headers: [(String, String)] = [], body: [UInt8] = []) {
            self.status = status
            self.headers = headers
            self.body = body
        }
    }

    public typealias Handler = @Sendable (Request) async -> Response

    public struct BindError: Error, CustomStringConvertible {
        public let description: String
    }

    public let port: Int
    private let channel: any Channel
    private let group: MultiThreadedEventLoopGroup
    private let accepted: NIOLockedValueBox<Int>
    private let inFlight: NIOLockedValueBox<InFlight>

    /// How many TCP connections the server has accepted so far.
    public var acceptedConnections: Int { accepted.withLockedValue { $0 } }

    public init(host: String = "127.0.0.1", port: Int = 0, maxBodyBytes: Int = 8 * 1024 * 1024, threads: Int = 1,
                handler: @escaping Handler) async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
        let accepted = NIOLockedValueBox(0)
        let inFlight = NIOLockedValueBox(InFlight())
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.backlog, value: 256)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                accepted.withLockedValue { $0 += 1 }
                return channel.pipeline.configureHTTPServerPipeline().flatMap {
                    channel.pipeline.addHandler(RequestHandler(handler: handler, maxBodyBytes: maxBodyBytes, inFlight: inFlight))
                }
            }
        do {
            self.channel = try await bootstrap.bind(host: host, port: port).get()
        } catch {
            try? await group.shutdownGracefully()
            let reason = (error as? IOError).map { $0.errnoCode == EADDRINUSE ? "the port is already in use" : "\($0)" } ?? "\(error)"
            throw BindError(description: "cannot listen on \(host):\(port): \(reason)")
        }
        self.group = group
        self.accepted = accepted
        self.inFlight = inFlight
        self.port = channel.localAddress?.port ?? port
    }

    /// Stops accepting connections, lets the requests in flight finish (for up to `grace`),
    /// then closes every connection. A handler still running after that has its answer
    /// dropped: its event loop is gone.
    public func shutdown(grace: Duration = .seconds(10)) async {
        try? await channel.close()
        let end = ContinuousClock.now + grace
        while inFlight.withLockedValue({ $0.count }) > 0, ContinuousClock.now < end {
            try? await Task.sleep(for: .milliseconds(10))
        }
        inFlight.withLockedValue { $0.abandoned = true }
        try? await group.shutdownGracefully()
    }
}

/// The requests whose handlers are running, and whether shutdown stopped waiting for them.
struct InFlight {
    var count = 0
    var abandoned = false
}

private final class RequestHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let handler: HTTPServer.Handler
    private let maxBodyBytes: Int
    private let inFlight: NIOLockedValueBox<InFlight>
    private var head: HTTPRequestHead?
    private var body: [UInt8] = []
    private var tooLarge = false

    init(handler: @escaping HTTPServer.Handler, maxBodyBytes: Int, inFlight: NIOLockedValueBox<InFlight>) {
        self.handler = handler
        self.maxBodyBytes = maxBodyBytes
        self.inFlight = inFlight
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
            body = []
            tooLarge = false
        case .body(var buffer):
            guard !tooLarge else { return }
            if body.count + buffer.readableBytes > maxBodyBytes {
                tooLarge = true
                body = []
            } else {
                body += buffer.readBytes(length: buffer.readableBytes) ?? []
            }
        case .end:
            guard let head else { return }
            let keepAlive = head.isKeepAlive && !tooLarge
            if tooLarge {
                write(HTTPServer.Response(status: 413, headers: [("Content-Type", "text/plain")], body: Array("request body too large\n".utf8)),
                      version: head.version, keepAlive: false, context: context)
                return
            }
            let request = HTTPServer.Request(
                method: head.method.rawValue, uri: head.uri, headers: head.headers.map { ($0.name, $0.value) }, body: body,
                remoteAddress: context.remoteAddress?.ipAddress)
            let handler = self.handler
            let inFlight = self.inFlight
            inFlight.withLockedValue { $0.count += 1 }
            let loop = context.eventLoop
            let bound = NIOLoopBound((self, context), eventLoop: loop)
            Task {
                let response = await handler(request)
                // Under the lock, so shutdown cannot stop the loop between the check and the
                // hand-over; once shutdown has given up waiting, the answer is dropped.
                inFlight.withLockedValue { state in
                    state.count -= 1
                    guard !state.abandoned else { return }
                    loop.execute {
                        let (me, context) = bound.value
                        me.write(response, version: head.version, keepAlive: keepAlive, context: context)
                    }
                }
            }
        }
    }

    private func write(_ response: HTTPServer.Response, version: HTTPVersion, keepAlive: Bool, context: ChannelHandlerContext) {
        var headers = HTTPHeaders(response.headers)
        headers.replaceOrAdd(name: "Content-Length", value: String(response.body.count))
        headers.replaceOrAdd(name: "Connection", value: keepAlive ? "keep-alive" : "close")
        let head = HTTPResponseHead(version: version, status: HTTPResponseStatus(statusCode: response.status), headers: headers)
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        var buffer = context.channel.allocator.buffer(capacity: response.body.count)
        buffer.writeBytes(response.body)
        context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in
            if !keepAlive { context.close(promise: nil) }
        }
    }
}

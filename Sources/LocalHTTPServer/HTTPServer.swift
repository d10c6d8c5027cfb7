import Essentials
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix

#if canImport(Glibc)
import Glibc
#endif

/// A small HTTP/1.1 server on SwiftNIO with an async handler per request: the local gateway
/// (`serve`) and the tests' loopback stand-ins are built on it. It is meant to be safe behind
/// a tunnel:
/// - a request that does not parse gets 400 and its connection is closed;
/// - a request head not complete within `headTimeout` (10 s), a body not complete within
///   `idleTimeout`, and a connection idle for `idleTimeout` (60 s) are closed;
/// - a body over `maxBodyBytes` gets 413 and its connection is closed: at once for
///   `Expect: 100-continue` (which is otherwise answered `100 Continue`), so the client never
///   sends it; otherwise once the client has sent it (unbuffered), so the client reads the
///   answer instead of a reset;
/// - past `maxConnections` open connections, the connection idle the longest is closed to
///   make room (or, when every one is busy, the new one is refused), so idle sockets never
///   stop a real request.
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
            headers.first { HeaderName.equal($0.0, name) }?.1
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

    /// The limits of one server; the defaults are the local gateway's.
    public struct Limits: Sendable {
        public var maxBodyBytes: Int
        public var maxConnections: Int
        public var headTimeout: Duration
        public var idleTimeout: Duration

        public init(
            maxBodyBytes: Int = 8 * 1024 * 1024, maxConnections: Int = 512,
            headTimeout: Duration = .seconds(10), idleTimeout: Duration = .seconds(60)
        ) {
            self.maxBodyBytes = maxBodyBytes
            self.maxConnections = maxConnections
            self.headTimeout = headTimeout
            self.idleTimeout = idleTimeout
        }
    }

    public let port: Int
    private let channel: any Channel
    private let group: MultiThreadedEventLoopGroup
    private let accepted: NIOLockedValueBox<Int>
    private let inFlight: NIOLockedValueBox<InFlight>
    private let registry: ConnectionRegistry

    /// How many TCP connections the server has accepted so far.
    public var acceptedConnections: Int { accepted.withLockedValue { $0 } }
    /// How many are open now.
    public var openConnections: Int { registry.count }

    public convenience init(
        host: String = "127.0.0.1", port: Int = 0, maxBodyBytes: Int = 8 * 1024 * 1024, threads: Int = 1,
        handler: @escaping Handler
    ) async throws {
        try await self.init(host: host, port: port, limits: Limits(maxBodyBytes: maxBodyBytes), threads: threads, handler: handler)
    }

    public init(
        host: String = "127.0.0.1", port: Int = 0, limits: Limits, threads: Int = 1,
        handler: @escaping Handler
    ) async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
        let accepted = NIOLockedValueBox(0)
        let inFlight = NIOLockedValueBox(InFlight())
        let registry = ConnectionRegistry(limit: limits.maxConnections)
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.backlog, value: 256)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                accepted.withLockedValue { $0 += 1 }
                guard registry.admit(channel) else { return channel.close() }
                channel.closeFuture.whenComplete { _ in registry.remove(channel) }
                let timers = ConnectionTimers(channel: channel, registry: registry, limits: limits)
                do {
                    try channel.pipeline.syncOperations.addHandler(ActivityWatcher(timers: timers))
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(
                        RequestHandler(handler: handler, maxBodyBytes: limits.maxBodyBytes, inFlight: inFlight, timers: timers))
                    return channel.eventLoop.makeSucceededVoidFuture()
                } catch {
                    return channel.eventLoop.makeFailedFuture(error)
                }
            }
            .childChannelOption(ChannelOptions.allowRemoteHalfClosure, value: false)
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
        self.registry = registry
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

/// The open connections, with when each was last active and whether a request is being
/// handled on it, so the connection idle the longest can make room for a new one.
final class ConnectionRegistry: Sendable {
    private struct Entry {
        let channel: any Channel
        var lastActivity: NIODeadline
        var busy: Bool
    }

    private let limit: Int
    private let entries = NIOLockedValueBox<[ObjectIdentifier: Entry]>([:])

    init(limit: Int) {
        self.limit = max(limit, 1)
    }

    var count: Int { entries.withLockedValue { $0.count } }

    /// Takes a new connection in; at the limit, closes the idlest one first. False when every
    /// connection is busy: the new one is refused.
    func admit(_ channel: any Channel) -> Bool {
        let evicted: (any Channel)? = entries.withLockedValue { entries in
            var victim: (any Channel)? = nil
            if entries.count >= limit {
                guard let idlest = entries.filter({ !$0.value.busy }).min(by: { $0.value.lastActivity < $1.value.lastActivity }) else {
                    return nil
                }
                entries[idlest.key] = nil
                victim = idlest.value.channel
            }
            entries[ObjectIdentifier(channel)] = Entry(channel: channel, lastActivity: .now(), busy: false)
            return victim
        }
        evicted?.close(promise: nil)
        return entries.withLockedValue { $0[ObjectIdentifier(channel)] != nil }
    }

    func remove(_ channel: any Channel) {
        _ = entries.withLockedValue { $0.removeValue(forKey: ObjectIdentifier(channel)) }
    }

    func touch(_ channel: any Channel, busy: Bool? = nil) {
        entries.withLockedValue { entries in
            let key = ObjectIdentifier(channel)
            entries[key]?.lastActivity = .now()
            if let busy { entries[key]?.busy = busy }
        }
    }
}

/// The deadlines of one connection; used on its event loop only.
final class ConnectionTimers: @unchecked Sendable {
    enum Phase { case awaitingHead, readingBody, handling, idle }

    private let channel: any Channel
    private let registry: ConnectionRegistry
    private let limits: HTTPServer.Limits
    private var phase = Phase.awaitingHead
    /// When the connection is closed unless the deadline moves or is lifted.
    private var deadline: NIODeadline?
    /// The one timer (and when it fires), which need not move with every deadline: a timer
    /// firing before the deadline sets itself again for the rest (a request re-arms three
    /// times; scheduling and cancelling each time was most of what the connection cost).
    private var timer: Scheduled<Void>?
    private var timerFiresAt: NIODeadline?

    init(channel: any Channel, registry: ConnectionRegistry, limits: HTTPServer.Limits) {
        self.channel = channel
        self.registry = registry
        self.limits = limits
    }

    private func arm(_ duration: Duration) {
        let due = NIODeadline.now() + TimeAmount(duration)
        deadline = due
        if let firesAt = timerFiresAt, firesAt <= due { return }
        timer?.cancel()
        schedule(at: due)
    }

    private func schedule(at due: NIODeadline) {
        timerFiresAt = due
        timer = channel.eventLoop.scheduleTask(deadline: due) { [self] in
            timer = nil
            timerFiresAt = nil
            guard let deadline else { return }
            if deadline <= .now() { channel.close(promise: nil) } else { schedule(at: deadline) }
        }
    }

    private func disarm() {
        deadline = nil
    }

    func connected() { phase = .awaitingHead; arm(limits.headTimeout) }

    func bytesArrived() {
        registry.touch(channel)
        if phase == .idle {
            phase = .awaitingHead
            arm(limits.headTimeout)
        }
    }

    func headArrived() {
        phase = .readingBody
        registry.touch(channel, busy: true)
        arm(limits.idleTimeout)
    }

    func requestComplete() {
        phase = .handling
        disarm()
    }

    func responseSent() {
        phase = .idle
        registry.touch(channel, busy: false)
        arm(limits.idleTimeout)
    }

    func closed() {
        deadline = nil
        timer?.cancel()
        timer = nil
        timerFiresAt = nil
    }
}

/// First in the pipeline: sees every byte that arrives, so a trickled head or an idle
/// connection is timed from its bytes, not from whole requests.
private final class ActivityWatcher: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private let timers: ConnectionTimers

    init(timers: ConnectionTimers) {
        self.timers = timers
    }

    func channelActive(context: ChannelHandlerContext) {
        timers.connected()
        context.fireChannelActive()
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { timers.connected() }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        timers.bytesArrived()
        context.fireChannelRead(data)
    }

    func channelInactive(context: ChannelHandlerContext) {
        timers.closed()
        context.fireChannelInactive()
    }
}

private final class RequestHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let handler: HTTPServer.Handler
    private let maxBodyBytes: Int
    private let inFlight: NIOLockedValueBox<InFlight>
    private let timers: ConnectionTimers
    private var head: HTTPRequestHead?
    private var body: [UInt8] = []
    /// The request was already answered (413 or 417 at once): the rest of it is ignored.
    private var answered = false
    /// The body passed the limit: it is read and dropped, and answered 413 at its end.
    private var tooLarge = false

    init(handler: @escaping HTTPServer.Handler, maxBodyBytes: Int, inFlight: NIOLockedValueBox<InFlight>, timers: ConnectionTimers) {
        self.handler = handler
        self.maxBodyBytes = maxBodyBytes
        self.inFlight = inFlight
        self.timers = timers
    }

    private func refuseTooLarge(_ head: HTTPRequestHead, context: ChannelHandlerContext) {
        answered = true
        body = []
        write(
            HTTPServer.Response(status: 413, headers: [("Content-Type", "text/plain")], body: Array("request body too large\n".utf8)),
            version: head.version, keepAlive: false, context: context)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
            body = []
            answered = false
            tooLarge = false
            timers.headArrived()
            let declared = head.headers.first(name: "content-length").flatMap { Int($0) }
            if let declared, declared > maxBodyBytes {
                tooLarge = true
            }
            if let expectation = head.headers.first(name: "expect") {
                if tooLarge {
                    refuseTooLarge(head, context: context)
                    return
                }
                guard expectation.lowercased() == "100-continue" else {
                    answered = true
                    write(
                        HTTPServer.Response(status: 417, headers: [("Content-Type", "text/plain")], body: Array("unsupported expectation\n".utf8)),
                        version: head.version, keepAlive: false, context: context)
                    return
                }
                let interim = HTTPResponseHead(version: head.version, status: .continue)
                context.writeAndFlush(wrapOutboundOut(.head(interim)), promise: nil)
            }
        case .body(var buffer):
            guard !answered, !tooLarge else { return }
            if body.count + buffer.readableBytes > maxBodyBytes {
                tooLarge = true
                body = []
            } else {
                body += buffer.readBytes(length: buffer.readableBytes) ?? []
            }
        case .end:
            guard let head, !answered else { return }
            if tooLarge {
                refuseTooLarge(head, context: context)
                return
            }
            timers.requestComplete()
            let keepAlive = head.isKeepAlive
            let request = HTTPServer.Request(
                method: head.method.rawValue, uri: head.uri, headers: head.headers.map { ($0.name, $0.value) }, body: body,
                remoteAddress: context.remoteAddress?.ipAddress)
            body = []
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

    /// A request that does not parse: NIO's protocol error handler has answered 400; the
    /// connection is closed, whatever the error.
    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    private func write(_ response: HTTPServer.Response, version: HTTPVersion, keepAlive: Bool, context: ChannelHandlerContext) {
        var headers = HTTPHeaders(response.headers)
        headers.replaceOrAdd(name: "Content-Length", value: String(response.body.count))
        headers.replaceOrAdd(name: "Connection", value: keepAlive ? "keep-alive" : "close")
        let status = (100...599).contains(response.status) ? response.status : 500
        let head = HTTPResponseHead(version: version, status: HTTPResponseStatus(statusCode: status), headers: headers)
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        var buffer = context.channel.allocator.buffer(capacity: response.body.count)
        buffer.writeBytes(response.body)
        context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        let timers = self.timers
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in
            if keepAlive { timers.responseSent() } else { context.close(promise: nil) }
        }
    }
}

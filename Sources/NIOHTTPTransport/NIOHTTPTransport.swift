import HTTPTransport
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import NIOTLS

/// The `HTTPTransport` adapter on SwiftNIO: HTTP/1.1 over TCP, TLS 1.2 or later through
/// NIOSSL with the system's trust roots and the server's name checked, kept-alive connections
/// reused per host, at most `maxConnectionsPerHost` open to one host (a request past it waits
/// for one, within its deadline), one deadline per request covering the wait, connect, TLS,
/// request and answer, and a limit on the answer's size. Redirects are not followed: a request goes to the host it names
/// and nowhere else (a token in its headers or query stays with that host).
///
/// It replaced AsyncHTTPClient, whose HTTP/2, proxies, compression, tracing and configuration
/// we did not use and every bootstrap carried (docs/architecture.md "The HTTP client").
public final class NIOHTTPTransport: HTTPTransport {
    private let group: any EventLoopGroup
    private let maxResponseBytes: Int
    private let tls: TLSConfiguration
    private let maxIdlePerHost: Int
    private let maxConnectionsPerHost: Int
    private let idleLimit: TimeAmount
    /// The TLS context, made on the first https request (it reads the trust roots).
    private let context = NIOLockedValueBox<NIOSSLContext?>(nil)
    private let pools = NIOLockedValueBox(Pools())

    /// - Parameters:
    ///   - maxResponseBytes: a longer answer is refused (`TransportError.Kind.tooLarge`).
    ///   - idleLimit: a connection idle longer than this is closed rather than reused: a server
    ///     (or a Lambda execution environment frozen between invocations) may have dropped it.
    public convenience init(maxResponseBytes: Int = 8 * 1024 * 1024, idleLimit: Duration = .seconds(15)) {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.minimumTLSVersion = .tlsv12
        self.init(maxResponseBytes: maxResponseBytes, idleLimit: idleLimit, tls: tls)
    }

    /// With a TLS configuration of the caller's (the tests trust their own certificate authority).
    /// - Parameter maxConnectionsPerHost: the connections open to one host at most: a flood of
    ///   requests (`serve` under a peak) waits for them instead of opening a socket each, which
    ///   would run the process out of file descriptors.
    package init(
        maxResponseBytes: Int = 8 * 1024 * 1024, idleLimit: Duration = .seconds(15), tls: TLSConfiguration, maxIdlePerHost: Int = 16,
        maxConnectionsPerHost: Int = 64
    ) {
        self.group = MultiThreadedEventLoopGroup.singleton
        self.maxResponseBytes = maxResponseBytes
        self.idleLimit = TimeAmount(idleLimit)
        self.tls = tls
        self.maxIdlePerHost = max(0, maxIdlePerHost)
        self.maxConnectionsPerHost = max(1, maxConnectionsPerHost)
    }

    deinit {
        for pool in pools.withLockedValue({ $0.hosts.values }) {
            for connection in pool.idle { connection.channel.close(promise: nil) }
        }
    }

    public func send(_ request: OutboundRequest, timeout: Duration) async throws(TransportError) -> OutboundResponse {
        guard let (origin, target) = Origin.parse(request.url) else {
            throw TransportError(.other, "not an http or https URL with a host")
        }
        // Never past the invocation's deadline, whatever the caller's own timeout.
        let timeout = Deadline.bound(timeout)
        guard timeout > .zero else { throw TransportError(.timeout, "no time left before the deadline to call \(origin.host)") }
        let deadline = NIODeadline.now() + TimeAmount(timeout)
        var head = HTTPRequestHead(version: .http1_1, method: HTTPMethod(rawValue: request.method), uri: target)
        for (name, value) in request.headers { head.headers.add(name: name, value: value) }
        if !head.headers.contains(name: "host") { head.headers.add(name: "Host", value: origin.hostHeader) }
        let hasBody = !request.body.isEmpty || request.method == "POST" || request.method == "PUT" || request.method == "PATCH"
        if hasBody { head.headers.replaceOrAdd(name: "Content-Length", value: String(request.body.count)) }
        let body = hasBody ? ByteBuffer(bytes: request.body) : nil
        // A kept-alive connection the server closed meanwhile takes no request: one the request
        // never reached is tried again on a new connection (the server cannot have seen it).
        var (channel, reused) = try await connection(to: origin, deadline: deadline, reuse: true)
        while true {
            if let rule = request.peers { try Self.check(channel, against: rule, host: origin.host) }
            switch await exchange(head, body, on: channel, host: origin.host, deadline: deadline) {
            case .answered(let answer):
                if answer.keepAlive { release(channel, to: origin) } else { channel.close(promise: nil) }
                return OutboundResponse(status: answer.status, headers: answer.headers, body: answer.body)
            case .unsent where reused:
                (channel, reused) = try await connection(to: origin, deadline: deadline, reuse: false)
            case .unsent(let error), .failed(let error):
                throw error
            }
        }
    }

    /// Refuses (closing it, nothing written) a connection whose peer `rule` forbids.
    private static func check(_ channel: any Channel, against rule: PeerRule, host: String) throws(TransportError) {
        guard let text = channel.remoteAddress?.ipAddress, let address = IPAddress(text) else {
            channel.close(promise: nil)
            throw TransportError(.connection, "\(host) was refused: its address could not be checked")
        }
        guard rule.allows(address) else {
            channel.close(promise: nil)
            throw TransportError(.connection, "\(host) was refused: it resolves to a \(address.scope.rawValue) address, which this request may not reach")
        }
    }

    private enum Outcome {
        case answered(Answer)
        /// The request never reached the connection.
        case unsent(TransportError)
        case failed(TransportError)
    }

    /// Writes one request on `channel` and waits for its answer, until `deadline`.
    private func exchange(_ head: HTTPRequestHead, _ body: ByteBuffer?, on channel: any Channel, host: String, deadline: NIODeadline) async -> Outcome {
        // One hand-off to the connection's event loop sets everything up there (the deadline,
        // the write, the wait for the answer): each of these done from the task's thread would
        // be a hand-off of its own.
        let limit = maxResponseBytes
        let outcome = await withCheckedContinuation { (continuation: CheckedContinuation<Outcome, Never>) in
            let loop = channel.eventLoop
            loop.execute {
                let answer = loop.makePromise(of: Answer.self)
                let written = loop.makePromise(of: Void.self)
                // Whichever comes first completes the answer; a later completion is ignored.
                let timer = loop.scheduleTask(deadline: deadline) {
                    answer.fail(TransportError(.timeout, "\(host) did not answer in time"))
                }
                written.futureResult.whenFailure { error in
                    answer.fail(Unsent(failure: TransportError(.connection, "\(host) could not be reached: \(Self.describe(error))")))
                }
                answer.futureResult.whenComplete { result in
                    timer.cancel()
                    switch result {
                    case .success(let answer): continuation.resume(returning: .answered(answer))
                    case .failure where NIODeadline.now() >= deadline:
                        // Whatever ended it, the caller's time is up.
                        channel.close(promise: nil)
                        continuation.resume(returning: .failed(TransportError(.timeout, "\(host) did not answer in time")))
                    case .failure(let error as Unsent):
                        channel.close(promise: nil)
                        continuation.resume(returning: .unsent(error.failure))
                    case .failure(let error):
                        channel.close(promise: nil)
                        let failure = error as? TransportError ?? TransportError(.connection, "\(host) could not be reached: \(Self.describe(error))")
                        continuation.resume(returning: .failed(failure))
                    }
                }
                channel.writeAndFlush(Exchange(head: head, body: body, limit: limit, answer: answer), promise: written)
            }
        }
        return outcome
    }

    /// The request never reached the connection (its write failed).
    private struct Unsent: Error {
        let failure: TransportError
    }

    // MARK: Connections

    /// A kept-alive connection to `origin` if one is idle and fresh, else a new one if fewer
    /// than `maxConnectionsPerHost` are open, else the first one released (or the place of the
    /// first one closed), waiting until `deadline` at most.
    private func connection(to origin: Origin, deadline: NIODeadline, reuse: Bool) async throws(TransportError) -> (any Channel, reused: Bool) {
        let now = NIODeadline.now()
        let (grant, stale) = pools.withLockedValue { pools -> (Grant?, [any Channel]) in
            var stale: [any Channel] = []
            while reuse, let candidate = pools.hosts[origin]?.idle.popLast() {
                if candidate.channel.isActive && now - candidate.since < idleLimit { return (.connection(candidate.channel), stale) }
                // Closing it frees its place (`closeFuture`, below).
                stale.append(candidate.channel)
            }
            if pools.hosts[origin, default: HostPool()].open < maxConnectionsPerHost {
                pools.hosts[origin, default: HostPool()].open += 1
                return (.openNew, stale)
            }
            return (nil, stale)
        }
        for channel in stale { channel.close(promise: nil) }
        let given: Grant
        if let grant { given = grant } else { given = try await waitForConnection(to: origin, deadline: deadline) }
        if case .connection(let channel) = given { return (channel, true) }
        return try await open(origin, deadline: deadline)
    }

    /// Waits for a connection to `origin` to be released or to close, until `deadline`.
    private func waitForConnection(to origin: Origin, deadline: NIODeadline) async throws(TransportError) -> Grant {
        let loop = group.any()
        let pools = self.pools
        let granted = await withCheckedContinuation { (continuation: CheckedContinuation<Grant?, Never>) in
            let id = pools.withLockedValue { pools -> UInt64 in
                pools.nextWaiter &+= 1
                pools.hosts[origin, default: HostPool()].waiters.append(Waiter(id: pools.nextWaiter, continuation: continuation))
                return pools.nextWaiter
            }
            // Whoever takes the waiter off the list resumes it: the deadline here, or a release.
            loop.scheduleTask(deadline: deadline) {
                let waiter = pools.withLockedValue { pools -> Waiter? in
                    guard let index = pools.hosts[origin]?.waiters.firstIndex(where: { $0.id == id }) else { return nil }
                    return pools.hosts[origin]?.waiters.remove(at: index)
                }
                waiter?.continuation.resume(returning: nil)
            }
        }
        guard let granted else {
            throw TransportError(.timeout, "\(origin.host) did not answer in time (all \(maxConnectionsPerHost) connections to it were busy)")
        }
        return granted
    }

    /// A connection's place is free (it closed, or never opened): the first waiter opens one in
    /// its place, or the host has one fewer. Static, so a connection's close callback holds the
    /// pools and not the transport (whose `deinit` closes the idle connections).
    private static func placeFreed(_ origin: Origin, in pools: NIOLockedValueBox<Pools>) {
        let waiter = pools.withLockedValue { pools -> Waiter? in
            if let waiter = pools.hosts[origin]?.waiters.first {
                pools.hosts[origin]?.waiters.removeFirst()
                return waiter
            }
            pools.hosts[origin]?.open -= 1
            if let pool = pools.hosts[origin], pool.open <= 0, pool.idle.isEmpty { pools.hosts[origin] = nil }
            return nil
        }
        waiter?.continuation.resume(returning: .openNew)
    }

    /// A new connection to `origin`, its place already taken: freed when the connection
    /// closes, or at once if it never opens.
    private func open(_ origin: Origin, deadline: NIODeadline) async throws(TransportError) -> (any Channel, reused: Bool) {
        let now = NIODeadline.now()
        let context: NIOSSLContext?
        if origin.secure {
            do { context = try tlsContext() } catch {
                Self.placeFreed(origin, in: pools)
                throw TransportError(.other, "TLS could not be set up: \(Self.describe(error))")
            }
        } else {
            context = nil
        }
        let host = origin.host
        // Ready when TCP (and TLS) are up: a handshake's failure is the request's error.
        let ready = group.any().makePromise(of: Void.self)
        let bootstrap = ClientBootstrap(group: group)
            .connectTimeout(max(.milliseconds(1), deadline - now))
            .channelOption(.socketOption(.so_keepalive), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let context {
                        try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: context, serverHostname: host))
                    }
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(ExchangeHandler(host: host, ready: ready, secure: context != nil))
                }
            }
        let channel: any Channel
        do {
            channel = try await bootstrap.connect(host: origin.connectHost, port: origin.port).get()
            let pools = self.pools
            channel.closeFuture.whenComplete { _ in Self.placeFreed(origin, in: pools) }
        } catch {
            Self.placeFreed(origin, in: pools)
            ready.fail(error)
            if NIODeadline.now() >= deadline { throw TransportError(.timeout, "\(host) did not answer in time") }
            if case ChannelError.connectTimeout = error { throw TransportError(.timeout, "\(host) did not answer in time") }
            throw TransportError(.connection, "\(host) could not be reached: \(Self.describe(error))")
        }
        // The handshake's deadline fails `ready`, and only a failed `ready` closes the
        // connection: a handshake ending as the deadline comes cannot have its connection
        // closed after it was given out (a completed promise ignores a later failure).
        let timer = channel.eventLoop.scheduleTask(deadline: deadline) {
            ready.fail(TransportError(.timeout, "\(host) did not answer in time"))
        }
        ready.futureResult.whenComplete { result in
            timer.cancel()
            if case .failure = result { channel.close(promise: nil) }
        }
        do {
            try await ready.futureResult.get()
            return (channel, false)
        } catch {
            channel.close(promise: nil)
            throw error as? TransportError ?? TransportError(.connection, "\(host) could not be reached: \(Self.describe(error))")
        }
    }

    private func tlsContext() throws -> NIOSSLContext {
        try context.withLockedValue { context in
            if let context { return context }
            let made = try NIOSSLContext(configuration: tls)
            context = made
            return made
        }
    }

    /// A connection whose answer was read: to the first request waiting for one, else kept
    /// idle (up to `maxIdlePerHost`), else closed.
    private func release(_ channel: any Channel, to origin: Origin) {
        guard channel.isActive else {
            channel.close(promise: nil)
            return
        }
        let (waiter, kept) = pools.withLockedValue { pools -> (Waiter?, Bool) in
            if let waiter = pools.hosts[origin]?.waiters.first {
                pools.hosts[origin]?.waiters.removeFirst()
                return (waiter, true)
            }
            guard pools.hosts[origin, default: HostPool()].idle.count < maxIdlePerHost else { return (nil, false) }
            pools.hosts[origin, default: HostPool()].idle.append(IdleConnection(channel: channel, since: .now()))
            return (nil, true)
        }
        waiter?.continuation.resume(returning: .connection(channel))
        if !kept { channel.close(promise: nil) }
    }

    // MARK: Values

    /// Where a request goes, and what its connections are kept by: scheme, host and port.
    struct Origin: Hashable, Sendable {
        let secure: Bool
        let host: String
        let port: Int

        /// `host` as the connection names it: an IPv6 literal without its brackets.
        var connectHost: String {
            host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        }

        /// The Host header: the port only when it is not the scheme's own.
        var hostHeader: String { port == (secure ? 443 : 80) ? host : "\(host):\(port)" }

        /// The origin of an http or https URL, and the target its request line names (the path
        /// and query, "/" at least); nil for any other URL, or one with credentials or a bad port.
        static func parse(_ url: String) -> (origin: Origin, target: String)? {
            let secure: Bool
            let rest: Substring
            if url.hasPrefix("https://") {
                (secure, rest) = (true, url.dropFirst(8))
            } else if url.hasPrefix("http://") {
                (secure, rest) = (false, url.dropFirst(7))
            } else {
                return nil
            }
            let end = rest.firstIndex { $0 == "/" || $0 == "?" || $0 == "#" } ?? rest.endIndex
            let authority = rest[..<end]
            var path = rest[end...]
            if let fragment = path.firstIndex(of: "#") { path = path[..<fragment] }
            let target = path.isEmpty ? "/" : (path.first == "?" ? "/" + path : String(path))
            guard !authority.isEmpty, !authority.contains("@") else { return nil }
            var hostPart = authority
            var portNumber = secure ? 443 : 80
            if let colon = authority.lastIndex(of: ":"), !authority[colon...].contains("]") {
                guard let parsed = Int(authority[authority.index(after: colon)...]), (1...65535).contains(parsed) else { return nil }
                portNumber = parsed
                hostPart = authority[..<colon]
            }
            guard !hostPart.isEmpty, hostPart.allSatisfy({ $0.isASCII && !$0.isWhitespace }) else { return nil }
            let host = hostPart.lowercased()
            // A certificate names a host, not an address: https goes to names only.
            if secure && (host.hasPrefix("[") || host.allSatisfy({ $0.isNumber || $0 == "." })) { return nil }
            return (Origin(secure: secure, host: host, port: portNumber), target)
        }
    }

    /// The connections of every host, and the requests waiting for one.
    struct Pools {
        var hosts: [Origin: HostPool] = [:]
        var nextWaiter: UInt64 = 0
    }

    struct HostPool {
        var idle: [IdleConnection] = []
        /// Connections open or opening, idle ones included.
        var open = 0
        /// Requests waiting for a connection, first come first served.
        var waiters: [Waiter] = []
    }

    struct Waiter {
        let id: UInt64
        let continuation: CheckedContinuation<Grant?, Never>
    }

    /// What a request waiting for a connection is given.
    enum Grant {
        /// A connection just released, kept alive.
        case connection(any Channel)
        /// The place of a connection that closed: open a new one.
        case openNew
    }

    struct IdleConnection {
        let channel: any Channel
        let since: NIODeadline
    }

    /// What went wrong, without anything the request carried: NIO's and NIOSSL's errors name
    /// the failure (refused, reset, certificate), never a header or a URL's query.
    static func describe(_ error: any Error) -> String {
        switch error {
        case let error as IOError: return error.description
        case let error as NIOSSLError: return "TLS: \(error)"
        case let error as NIOSSLExtraError: return "TLS: \(error)"
        case let error as ChannelError: return "\(error)"
        case let error as NIOConnectionError:
            return "connection failed (\(error.connectionErrors.map { "\($0.error)" }.joined(separator: "; ")))"
        default: return String(describing: type(of: error))
        }
    }
}

/// One request written on a connection and the answer it waits for.
struct Exchange: Sendable {
    let head: HTTPRequestHead
    let body: ByteBuffer?
    let limit: Int
    let answer: EventLoopPromise<Answer>
}

struct Answer: Sendable {
    let status: Int
    let headers: [(String, String)]
    let body: [UInt8]
    let keepAlive: Bool
}

/// Writes an exchange's request and collects its answer, up to its limit; a connection that
/// closes or fails with an exchange open fails it.
final class ExchangeHandler: ChannelDuplexHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundIn = Exchange
    typealias OutboundOut = HTTPClientRequestPart

    private let host: String
    private let ready: EventLoopPromise<Void>
    private let secure: Bool
    private var pending: EventLoopPromise<Answer>?
    private var limit = 0
    private var head: HTTPResponseHead?
    private var body: [UInt8] = []

    init(host: String, ready: EventLoopPromise<Void>, secure: Bool) {
        self.host = host
        self.ready = ready
        self.secure = secure
    }

    func channelActive(context: ChannelHandlerContext) {
        if !secure { ready.succeed() }
        context.fireChannelActive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case TLSUserEvent.handshakeCompleted = event { ready.succeed() }
        context.fireUserInboundEventTriggered(event)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let exchange = unwrapOutboundIn(data)
        guard pending == nil else {
            exchange.answer.fail(TransportError(.other, "a connection to \(host) was given two requests at once"))
            promise?.fail(ChannelError.inappropriateOperationForState)
            return
        }
        pending = exchange.answer
        limit = exchange.limit
        head = nil
        body = []
        context.write(wrapOutboundOut(.head(exchange.head)), promise: nil)
        if let bytes = exchange.body, bytes.readableBytes > 0 { context.write(wrapOutboundOut(.body(.byteBuffer(bytes))), promise: nil) }
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: promise)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let received):
            // An interim answer (100 Continue) is followed by the real one.
            if received.status.code >= 200 || received.status.code < 100 { head = received }
        case .body(var bytes):
            guard pending != nil else { return }
            guard body.count + bytes.readableBytes <= limit else {
                fail(TransportError(.tooLarge, "\(host) answered more than \(limit) bytes"))
                context.close(promise: nil)
                return
            }
            body += bytes.readBytes(length: bytes.readableBytes) ?? []
        case .end:
            guard let promise = pending, let head else { return }
            pending = nil
            promise.succeed(
                Answer(status: Int(head.status.code), headers: head.headers.map { ($0.name, $0.value) }, body: body, keepAlive: head.isKeepAlive))
            self.head = nil
            body = []
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        ready.fail(TransportError(.connection, "\(host) closed the connection"))
        fail(TransportError(.connection, "\(host) closed the connection before answering"))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        ready.fail(TransportError(.connection, "\(host) could not be reached: \(NIOHTTPTransport.describe(error))"))
        fail(TransportError(.connection, "\(host) could not be reached: \(NIOHTTPTransport.describe(error))"))
        context.close(promise: nil)
    }

    private func fail(_ error: TransportError) {
        guard let promise = pending else { return }
        pending = nil
        promise.fail(error)
    }
}

import Foundation

/// A Lambda Runtime API on loopback that costs as little as possible, so the bench measures
/// the bootstrap rather than the stand-in: one thread, blocking sockets, one connection, the
/// the events handed out in turn (the same one over and over, or each once). It follows the documented protocol (AWS Lambda
/// Developer Guide, "Using the Lambda runtime API for custom runtimes"): `GET .../next` gets
/// 200 with the request id, deadline, function ARN and trace id headers; `POST .../response`
/// and `.../error` get 202. After the last event, `next` is left unanswered (as Lambda
/// freezes an idle function) until `close()`.
/// `RuntimeAPIStandIn` (NIO) checks every request for the tests; this one only counts and
/// keeps the last answer, and can send the event with chunked transfer coding, as a Go
/// `net/http` server (the Runtime Interface Emulator) does for bodies over 2 KB.
public final class BlockingRuntimeAPI: @unchecked Sendable {
    public let port: Int
    private let listener: Int32
    private let events: [[UInt8]]
    private let chunked: Bool
    /// When each invocation was handed out and answered (uptime nanoseconds), by request number.
    private var handedOutAt: [UInt64] = []
    private var answeredAt: [UInt64] = []
    private let lock = NSCondition()
    private var responses = 0
    private var errors = 0
    private var served = 0
    private var allowed = 0
    private var closed = false
    private var lastAnswer: (path: String, body: [UInt8])?

    public var endpoint: String { "127.0.0.1:\(port)" }

    /// The path and body of the last `response` or `error` post.
    public var lastPost: (path: String, body: [UInt8])? {
        lock.lock()
        defer { lock.unlock() }
        return lastAnswer
    }

    public convenience init(event: [UInt8], chunked: Bool = false) throws {
        try self.init(events: [event], chunked: chunked)
    }

    /// Hands out `events` in turn, starting over after the last.
    public init(events: [[UInt8]], chunked: Bool = false) throws {
        self.events = events.isEmpty ? [[]] : events
        self.chunked = chunked
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { raw -> Bool in
                bind(fd, raw, length) == 0 && listen(fd, 1) == 0 && getsockname(fd, raw, &length) == 0
            }
        }
        guard fd >= 0, bound else { throw ListenError() }
        listener = fd
        port = Int(UInt16(bigEndian: address.sin_port))
        let thread = Thread { [self] in serve() }
        thread.stackSize = 1 << 20
        thread.start()
    }

    public struct ListenError: Error, CustomStringConvertible {
        public var description: String { "cannot listen on a loopback port" }
    }

    /// Hands out `count` more events and waits until they are answered; returns the totals.
    /// Gives up after `timeout` seconds (a bootstrap that died answers nothing).
    public func run(_ count: Int, timeout: TimeInterval = 120) -> (responses: Int, errors: Int) {
        let deadline = Date(timeIntervalSinceNow: timeout)
        lock.lock()
        let target = responses + errors + count
        allowed += count
        lock.broadcast()
        while responses + errors < target && !closed && lock.wait(until: deadline) {}
        defer { lock.unlock() }
        return (responses, errors)
    }

    /// `run` from async code, waiting on a thread of its own, never on the cooperative pool.
    public func answered(_ count: Int, timeout: TimeInterval = 30) async -> (responses: Int, errors: Int) {
        await Executables.offPool { [self] in run(count, timeout: timeout) }
    }

    /// How long the function had each invocation answered so far, from `next` handing it out
    /// to its answer arriving, in order (ms).
    public var durations: [Double] {
        lock.lock()
        defer { lock.unlock() }
        return zip(handedOutAt, answeredAt).map { Double($1 &- $0) / 1e6 }
    }

    public func close() {
        lock.lock()
        closed = true
        lock.broadcast()
        lock.unlock()
        shutdown(listener, Int32(SHUT_RDWR))
        Glibc.close(listener)
    }

    private func serve() {
        let connection = accept(listener, nil, nil)
        guard connection >= 0 else { return }
        var one: Int32 = 1
        setsockopt(connection, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        defer { Glibc.close(connection) }
        var buffer = [UInt8](repeating: 0, count: 256 * 1024)
        var start = 0
        var end = 0
        let accepted = Array("HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: 16\r\n\r\n{\"status\":\"OK\"}\n".utf8)
        while true {
            // One request: the head up to CR LF CR LF, then Content-Length bytes of body.
            var headEnd: Int?
            while headEnd == nil {
                headEnd = Self.find([13, 10, 13, 10], in: buffer, from: start, to: end)
                if headEnd == nil {
                    if start > 0 { buffer.replaceSubrange(0..<(end - start), with: buffer[start..<end]); end -= start; start = 0 }
                    let count = buffer.withUnsafeMutableBytes { recv(connection, $0.baseAddress! + end, $0.count - end, 0) }
                    if count <= 0 { return }
                    end += count
                }
            }
            let head = String(decoding: buffer[start..<headEnd!], as: UTF8.self)
            let length = Self.contentLength(head)
            start = headEnd! + 4
            while end - start < length {
                if start > 0 { buffer.replaceSubrange(0..<(end - start), with: buffer[start..<end]); end -= start; start = 0 }
                let count = buffer.withUnsafeMutableBytes { recv(connection, $0.baseAddress! + end, $0.count - end, 0) }
                if count <= 0 { return }
                end += count
            }
            start += length
            if head.hasPrefix("GET /2018-06-01/runtime/invocation/next") {
                lock.lock()
                while served >= allowed && !closed { lock.wait() }
                if closed { lock.unlock(); return }
                served += 1
                let id = served
                handedOutAt.append(DispatchTime.now().uptimeNanoseconds)
                lock.unlock()
                let event = events[(id - 1) % events.count]
                let deadline = UInt64(Date().timeIntervalSince1970 * 1000) + 30_000
                var reply = Array(
                    """
                    HTTP/1.1 200 OK\r
                    Content-Type: application/json\r
                    Lambda-Runtime-Aws-Request-Id: bench-\(id)\r
                    Lambda-Runtime-Deadline-Ms: \(deadline)\r
                    Lambda-Runtime-Invoked-Function-Arn: arn:aws:lambda:eu-west-1:123456789012:function:bench\r
                    Lambda-Runtime-Trace-Id: Root=1-67890abc-0123456789abcdef01234567;Parent=53995c3f42cd8ad8;Sampled=0\r

                    """.utf8)
                if chunked {
                    // Uneven chunks, the first with an extension, then an empty trailer section.
                    reply += "Transfer-Encoding: chunked\r\n\r\n".utf8
                    var offset = 0
                    var size = 7
                    while offset < event.count {
                        let end = min(event.count, offset + size)
                        reply += "\(String(end - offset, radix: 16))\(offset == 0 ? ";ext=1" : "")\r\n".utf8
                        reply += event[offset..<end]
                        reply += "\r\n".utf8
                        offset = end
                        size = size * 3 + 1
                    }
                    reply += "0\r\n\r\n".utf8
                } else {
                    reply += "Content-Length: \(event.count)\r\n\r\n".utf8
                    reply += event
                }
                guard Self.sendAll(reply, to: connection) else { return }
            } else {
                guard Self.sendAll(accepted, to: connection) else { return }
                lock.lock()
                answeredAt.append(DispatchTime.now().uptimeNanoseconds)
                if head.contains("/error ") { errors += 1 } else { responses += 1 }
                let path = head.split(separator: " ").dropFirst().first.map(String.init) ?? ""
                lastAnswer = (path, Array(buffer[(start - length)..<start]))
                lock.broadcast()
                lock.unlock()
            }
        }
    }

    private static func sendAll(_ bytes: [UInt8], to connection: Int32) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let sent = bytes.withUnsafeBytes { send(connection, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
            guard sent > 0 else { return false }
            offset += sent
        }
        return true
    }

    /// The Content-Length of a message head (start line and fields), 0 without one.
    static func contentLength(_ head: String) -> Int {
        head.split(separator: "\r\n").first { $0.lowercased().hasPrefix("content-length:") }
            .flatMap { Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) } ?? 0
    }

    static func find(_ needle: [UInt8], in buffer: [UInt8], from start: Int, to end: Int) -> Int? {
        guard end - start >= needle.count else { return nil }
        for index in start...(end - needle.count) where buffer[index] == needle[0] {
            if buffer[index..<(index + needle.count)].elementsEqual(needle) { return index }
        }
        return nil
    }
}

/// The protocol's own floor: a bare client that does what any runtime must do per invocation
/// (GET next, read the event, POST a response, read the 202) and nothing else, on blocking
/// sockets with preallocated buffers. The bench runs it in a process of its own, as a
/// bootstrap runs, so its wall time per invocation against the same stand-in is what the
/// exchanges and the cross-process wake-ups cost on this machine; what a bootstrap takes
/// beyond it is the runtime's and the handler's.
public enum BareRuntimeClient {
    /// Serves invocations until the stand-in closes the connection.
    public static func run(port: Int) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(port).bigEndian
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
        guard connected else { return }
        defer { close(fd) }
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        let next = Array("GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".utf8)
        let body = #"{"body":"1158201444","headers":{"Content-Type":"text/plain"},"isBase64Encoded":false,"statusCode":200}"#
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        var invocation = 0
        while true {
            guard send(fd, next, next.count, 0) == next.count, readResponse(fd, &buffer) else { return }
            invocation += 1
            let post = Array(
                "POST /2018-06-01/runtime/invocation/bench-\(invocation)/response HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)"
                    .utf8)
            guard send(fd, post, post.count, 0) == post.count, readResponse(fd, &buffer) else { return }
        }
    }

    /// Reads one response (head and Content-Length body); the stand-in sends nothing unasked.
    private static func readResponse(_ fd: Int32, _ buffer: inout [UInt8]) -> Bool {
        var end = 0
        while true {
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + end, $0.count - end, 0) }
            guard count > 0 else { return false }
            end += count
            guard let head = BlockingRuntimeAPI.find([13, 10, 13, 10], in: buffer, from: 0, to: end) else { continue }
            let length = BlockingRuntimeAPI.contentLength(String(decoding: buffer[0..<head], as: UTF8.self))
            if end >= head + 4 + length { return true }
        }
    }
}

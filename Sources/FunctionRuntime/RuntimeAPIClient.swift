import Essentials

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A minimal HTTP/1.1 client for the Lambda Runtime API: one kept-alive TCP connection to
/// `AWS_LAMBDA_RUNTIME_API`, blocking calls, nothing else. The loop is strictly sequential
/// (next, handle, respond), so this costs no threads and no event loop at start-up.
/// Protocol: AWS Lambda Developer Guide, "Using the Lambda runtime API for custom runtimes".
final class RuntimeAPIClient {
    struct Response {
        let status: Int
        let headers: HTTPHeaders
        let body: [UInt8]
    }

    struct TransportError: Error, CustomStringConvertible {
        let description: String
    }

    private let host: String
    private let port: String
    private var socket: Int32 = -1
    /// Received bytes: `storage[readIndex..<endIndex]` is what has not been parsed yet. The
    /// storage is allocated once and reused, so a warm invocation allocates nothing to read.
    private var storage: UnsafeMutableRawBufferPointer
    private var readIndex = 0
    private var endIndex = 0

    init(endpoint: String) throws(TransportError) {
        // "host:port", where host may be a bracketed IPv6 literal.
        guard let colon = endpoint.lastIndex(of: ":") else {
            throw TransportError(description: "AWS_LAMBDA_RUNTIME_API must be host:port")
        }
        var host = String(endpoint[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        self.host = host
        self.port = String(endpoint[endpoint.index(after: colon)...])
        self.storage = .allocate(byteCount: 64 * 1024, alignment: 1)
    }

    deinit {
        close()
        storage.deallocate()
    }

    /// Sends one request; reconnects once if the kept-alive connection was closed by the peer.
    func send(method: String, path: String, headers: [(String, String)] = [], body: [UInt8] = []) throws(TransportError) -> Response {
        var request = "\(method) \(path) HTTP/1.1\r\nHost: \(host):\(port)\r\nUser-Agent: meta-messaging-runtime\r\n"
        for (name, value) in headers { request += "\(name): \(value)\r\n" }
        request += "Content-Length: \(body.count)\r\n\r\n"
        var bytes: [UInt8] = []
        bytes.reserveCapacity(request.utf8.count + body.count)
        bytes += request.utf8
        bytes += body
        let reused = socket >= 0
        do {
            try connectIfNeeded()
            try writeAll(bytes)
            return try readResponse()
        } catch {
            close()
            guard reused else { throw error }
            try connectIfNeeded()
            try writeAll(bytes)
            return try readResponse()
        }
    }

    private func connectIfNeeded() throws(TransportError) {
        guard socket < 0 else { return }
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = System.streamSocket
        var list: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, port, &hints, &list) == 0, let first = list else {
            throw TransportError(description: "cannot resolve the Runtime API at \(host):\(port)")
        }
        defer { freeaddrinfo(list) }
        var candidate: UnsafeMutablePointer<addrinfo>? = first
        while let info = candidate {
            let fd = System.socket(info.pointee.ai_family, info.pointee.ai_socktype, info.pointee.ai_protocol)
            if fd >= 0 {
                System.noSignalPipe(fd)
                if System.connect(fd, info.pointee.ai_addr, info.pointee.ai_addrlen) == 0 {
                    var one: Int32 = 1
                    setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
                    socket = fd
                    readIndex = 0
                    endIndex = 0
                    return
                }
                System.close(fd)
            }
            candidate = info.pointee.ai_next
        }
        throw TransportError(description: "cannot connect to the Runtime API at \(host):\(port): \(String(cString: strerror(errno)))")
    }

    private func close() {
        if socket >= 0 { System.close(socket) }
        socket = -1
        readIndex = 0
        endIndex = 0
    }

    private func writeAll(_ bytes: [UInt8]) throws(TransportError) {
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { raw in System.write(socket, raw, from: offset, socket: true) }
            if written < 0 {
                if errno == EINTR { continue }
                throw TransportError(description: "write to the Runtime API failed: \(String(cString: strerror(errno)))")
            }
            offset += written
        }
    }

    /// Reads more bytes after `endIndex`, first moving the unparsed bytes to the front or
    /// growing the storage when there is no room; false at end of stream.
    private func fill() throws(TransportError) -> Bool {
        if readIndex == endIndex {
            readIndex = 0
            endIndex = 0
        }
        if storage.count - endIndex < 16 * 1024 {
            let pending = endIndex - readIndex
            if readIndex > 0 {
                UnsafeMutableRawBufferPointer(rebasing: storage[0..<pending])
                    .copyMemory(from: UnsafeRawBufferPointer(rebasing: storage[readIndex..<endIndex]))
            }
            if storage.count - pending < 16 * 1024 {
                let larger = UnsafeMutableRawBufferPointer.allocate(byteCount: storage.count * 2, alignment: 1)
                UnsafeMutableRawBufferPointer(rebasing: larger[0..<pending]).copyMemory(from: UnsafeRawBufferPointer(rebasing: storage[0..<pending]))
                storage.deallocate()
                storage = larger
            }
            readIndex = 0
            endIndex = pending
        }
        while true {
            let count = System.read(socket, into: storage, at: endIndex, socket: true)
            if count < 0 {
                if errno == EINTR { continue }
                throw TransportError(description: "read from the Runtime API failed: \(String(cString: strerror(errno)))")
            }
            if count == 0 { return false }
            endIndex += count
            return true
        }
    }

    /// The next line (without its CR LF) as a string.
    private func readLine() throws(TransportError) -> String {
        while true {
            let pending = UnsafeRawBufferPointer(rebasing: storage[readIndex..<endIndex])
            if let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                var length = newline
                if length > 0, pending[length - 1] == UInt8(ascii: "\r") { length -= 1 }
                let line = String(decoding: UnsafeRawBufferPointer(rebasing: pending[0..<length]), as: UTF8.self)
                readIndex += newline + 1
                return line
            }
            guard try fill() else { throw TransportError(description: "the Runtime API closed the connection") }
        }
    }

    private func readBytes(_ count: Int, into body: inout [UInt8]) throws(TransportError) {
        while endIndex - readIndex < count {
            guard try fill() else { throw TransportError(description: "the Runtime API closed the connection mid-body") }
        }
        body += UnsafeRawBufferPointer(rebasing: storage[readIndex..<(readIndex + count)])
        readIndex += count
    }

    private func readResponse() throws(TransportError) -> Response {
        let statusLine = try readLine()
        let parts = statusLine.split(separator: " ", maxSplits: 2)
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/1."), let status = Int(parts[1]) else {
            throw TransportError(description: "the Runtime API sent a malformed status line")
        }
        var headers = HTTPHeaders()
        var contentLength: Int?
        var chunked = false
        var closing = false
        while true {
            let line = try readLine()
            if line.isEmpty { break }
            guard let colon = line.utf8.firstIndex(of: UInt8(ascii: ":")) else { continue }
            let name = String(line[..<colon])
            let value = line[line.index(after: colon)...].trimmingOptionalWhitespace()
            if HTTPHeaders.sameName(name, "content-length") {
                contentLength = Int(value)
            } else if HTTPHeaders.sameName(name, "transfer-encoding") {
                chunked = value.lowercased().contains("chunked")
            } else if HTTPHeaders.sameName(name, "connection") {
                closing = value.lowercased() == "close"
            }
            headers.add(name, value)
        }
        var body: [UInt8] = []
        if chunked {
            while true {
                let sizeLine = try readLine()
                guard let size = Int(sizeLine.split(separator: ";").first?.trimmingOptionalWhitespace() ?? "", radix: 16), size >= 0 else {
                    throw TransportError(description: "the Runtime API sent a malformed chunk")
                }
                if size == 0 {
                    while try !readLine().isEmpty {}
                    break
                }
                try readBytes(size, into: &body)
                _ = try readLine()
            }
        } else if let contentLength, contentLength >= 0 {
            body.reserveCapacity(contentLength)
            try readBytes(contentLength, into: &body)
        }
        if closing { close() }
        return Response(status: status, headers: headers, body: body)
    }
}

extension StringProtocol {
    /// The text without leading and trailing spaces and tabs: HTTP's optional whitespace
    /// (RFC 9110 section 5.6.3) around field values and cookie pairs. Not MetaMessaging's
    /// `trimmingSpaces()`, which drops every kind of whitespace from message text.
    func trimmingOptionalWhitespace() -> String {
        let text = Substring(self)
        let utf8 = text.utf8
        var start = utf8.startIndex
        var end = utf8.endIndex
        while start < end, utf8[start] == 0x20 || utf8[start] == 0x09 { start = utf8.index(after: start) }
        while start < end {
            let last = utf8.index(before: end)
            guard utf8[last] == 0x20 || utf8[last] == 0x09 else { break }
            end = last
        }
        return String(text[start..<end])
    }
}

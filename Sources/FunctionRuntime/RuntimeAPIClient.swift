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
    private var buffer: [UInt8] = []

    init(endpoint: String) throws(TransportError) {
        // "host:port", where host may be a bracketed IPv6 literal.
        guard let colon = endpoint.lastIndex(of: ":") else {
            throw TransportError(description: "AWS_LAMBDA_RUNTIME_API must be host:port")
        }
        var host = String(endpoint[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        self.host = host
        self.port = String(endpoint[endpoint.index(after: colon)...])
    }

    deinit { close() }

    /// Sends one request; reconnects once if the kept-alive connection was closed by the peer.
    func send(method: String, path: String, headers: [(String, String)] = [], body: [UInt8] = []) throws(TransportError) -> Response {
        var request = "\(method) \(path) HTTP/1.1\r\nHost: \(host):\(port)\r\nUser-Agent: meta-messaging-runtime\r\n"
        for (name, value) in headers { request += "\(name): \(value)\r\n" }
        request += "Content-Length: \(body.count)\r\n\r\n"
        let bytes = Array(request.utf8) + body
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
        #if canImport(Glibc)
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        #else
        hints.ai_socktype = SOCK_STREAM
        #endif
        var list: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, port, &hints, &list) == 0, let first = list else {
            throw TransportError(description: "cannot resolve the Runtime API at \(host):\(port)")
        }
        defer { freeaddrinfo(list) }
        var candidate: UnsafeMutablePointer<addrinfo>? = first
        while let info = candidate {
            let fd = Glibc.socket(info.pointee.ai_family, info.pointee.ai_socktype, info.pointee.ai_protocol)
            if fd >= 0 {
                if Glibc.connect(fd, info.pointee.ai_addr, info.pointee.ai_addrlen) == 0 {
                    var one: Int32 = 1
                    setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
                    socket = fd
                    buffer.removeAll(keepingCapacity: true)
                    return
                }
                Glibc.close(fd)
            }
            candidate = info.pointee.ai_next
        }
        throw TransportError(description: "cannot connect to the Runtime API at \(host):\(port): \(String(cString: strerror(errno)))")
    }

    private func close() {
        if socket >= 0 { Glibc.close(socket) }
        socket = -1
        buffer.removeAll(keepingCapacity: true)
    }

    private func writeAll(_ bytes: [UInt8]) throws(TransportError) {
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { raw in
                Glibc.send(socket, raw.baseAddress! + offset, raw.count - offset, Int32(MSG_NOSIGNAL))
            }
            if written < 0 {
                if errno == EINTR { continue }
                throw TransportError(description: "write to the Runtime API failed: \(String(cString: strerror(errno)))")
            }
            offset += written
        }
    }

    /// Reads more bytes into the buffer; false at end of stream.
    private func fill() throws(TransportError) -> Bool {
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let count = chunk.withUnsafeMutableBytes { Glibc.recv(socket, $0.baseAddress, $0.count, 0) }
            if count < 0 {
                if errno == EINTR { continue }
                throw TransportError(description: "read from the Runtime API failed: \(String(cString: strerror(errno)))")
            }
            if count == 0 { return false }
            buffer.append(contentsOf: chunk[0..<count])
            return true
        }
    }

    private func readLine() throws(TransportError) -> String {
        while true {
            if let index = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                var line = Array(buffer[..<index])
                if line.last == UInt8(ascii: "\r") { line.removeLast() }
                buffer.removeFirst(index + 1)
                return String(decoding: line, as: UTF8.self)
            }
            guard try fill() else { throw TransportError(description: "the Runtime API closed the connection") }
        }
    }

    private func readBytes(_ count: Int) throws(TransportError) -> [UInt8] {
        while buffer.count < count {
            guard try fill() else { throw TransportError(description: "the Runtime API closed the connection mid-body") }
        }
        let bytes = Array(buffer[..<count])
        buffer.removeFirst(count)
        return bytes
    }

    private func readResponse() throws(TransportError) -> Response {
        let statusLine = try readLine()
        let parts = statusLine.split(separator: " ", maxSplits: 2)
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/1."), let status = Int(parts[1]) else {
            throw TransportError(description: "the Runtime API sent a malformed status line")
        }
        var headers = HTTPHeaders()
        while true {
            let line = try readLine()
            if line.isEmpty { break }
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers.add(String(line[..<colon]), String(line[line.index(after: colon)...]).trimmingSpaces())
        }
        var body: [UInt8] = []
        if headers["transfer-encoding"]?.lowercased().contains("chunked") == true {
            while true {
                let sizeLine = try readLine()
                guard let size = Int(sizeLine.split(separator: ";")[0].trimmingSpaces(), radix: 16) else {
                    throw TransportError(description: "the Runtime API sent a malformed chunk")
                }
                if size == 0 {
                    while try !readLine().isEmpty {}
                    break
                }
                body += try readBytes(size)
                _ = try readLine()
            }
        } else if let length = headers["content-length"].flatMap({ Int($0) }) {
            body = try readBytes(length)
        }
        if headers["connection"]?.lowercased() == "close" { close() }
        return Response(status: status, headers: headers, body: body)
    }
}

extension StringProtocol {
    func trimmingSpaces() -> String {
        var view = Substring(self)
        while view.first == " " || view.first == "\t" { view.removeFirst() }
        while view.last == " " || view.last == "\t" { view.removeLast() }
        return String(view)
    }
}

import AsyncHTTPClient
import HTTPTransport
import NIOCore
import NIOHTTP1

/// The `HTTPTransport` adapter on AsyncHTTPClient: pooled keep-alive connections, TLS,
/// per-request timeouts, a response size limit.
public final class AsyncHTTPTransport: HTTPTransport {
    private let client: HTTPClient
    private let maxResponseBytes: Int

    /// Uses AsyncHTTPClient's process-wide shared client (its event loops start lazily and
    /// live as long as the process, which is what a Lambda function wants).
    public init(maxResponseBytes: Int = 8 * 1024 * 1024) {
        self.client = HTTPClient.shared
        self.maxResponseBytes = maxResponseBytes
    }

    public func send(_ request: OutboundRequest, timeout: Duration) async throws(TransportError) -> OutboundResponse {
        var outbound = HTTPClientRequest(url: request.url)
        outbound.method = HTTPMethod(rawValue: request.method)
        for (name, value) in request.headers { outbound.headers.add(name: name, value: value) }
        if !request.body.isEmpty || request.method == "POST" || request.method == "PUT" {
            outbound.body = .bytes(ByteBuffer(bytes: request.body))
        }
        let host = Self.host(of: request.url)
        do {
            let response = try await client.execute(
                outbound, timeout: .nanoseconds(Int64(timeout.components.seconds) * 1_000_000_000 + timeout.components.attoseconds / 1_000_000_000))
            var body = try await response.body.collect(upTo: maxResponseBytes)
            return OutboundResponse(
                status: Int(response.status.code),
                headers: response.headers.map { ($0.name, $0.value) },
                body: body.readBytes(length: body.readableBytes) ?? [])
        } catch let error as HTTPClientError where error == .deadlineExceeded || error == .readTimeout || error == .connectTimeout {
            throw TransportError(.timeout, "\(host) did not answer in time")
        } catch let error as NIOTooManyBytesError {
            _ = error
            throw TransportError(.tooLarge, "\(host) answered more than \(maxResponseBytes) bytes")
        } catch {
            throw TransportError(.connection, "\(host) could not be reached: \(Self.describe(error))")
        }
    }

    /// The host of a URL, for error messages (never the path or query: they may hold tokens).
    static func host(of url: String) -> String {
        let rest = url.split(separator: "://", maxSplits: 1).last.map(String.init) ?? url
        return String(rest.split(whereSeparator: { $0 == "/" || $0 == "?" }).first ?? "")
    }

    private static func describe(_ error: any Error) -> String {
        if let error = error as? HTTPClientError { return "\(error)" }
        return String(describing: type(of: error))
    }
}

import Essentials
import HTTPTransport

/// AWS's JSON protocol as DynamoDB, SQS and Kinesis speak it: `POST /` with `X-Amz-Target:
/// <prefix>.<Operation>` and `Content-Type: application/x-amz-json-1.0` (1.1 for Kinesis), signed with SigV4,
/// every request with a timeout, transient failures retried with full-jitter backoff. The
/// service says what a failure means (its own error type) and whether it is worth a retry.
public struct AWSJSONClient: Sendable {
    /// A request that did not succeed: an answer outside 2xx, or no answer at all.
    public enum Failure: Sendable {
        case status(Int, body: [UInt8])
        case transport(TransportError)
    }

    public let endpoint: String
    private let transport: any HTTPTransport
    private let signer: SigV4Signer
    private let targetPrefix: String
    private let timeout: Duration
    private let backoff: Backoff
    private let clock: WallClock
    /// `application/x-amz-json-1.0` (DynamoDB, SQS) or `-1.1` (Kinesis).
    private let contentType: String

    /// `targetPrefix` is the service's part of `X-Amz-Target`, such as `DynamoDB_20120810`.
    public init(
        transport: any HTTPTransport, signer: SigV4Signer, endpoint: String, targetPrefix: String,
        timeout: Duration, backoff: Backoff, contentType: String = "application/x-amz-json-1.0", clock: WallClock = .system
    ) {
        self.clock = clock
        self.transport = transport
        self.signer = signer
        self.endpoint = endpoint
        self.targetPrefix = targetPrefix
        self.timeout = timeout
        self.backoff = backoff
        self.contentType = contentType
    }

    /// The host, for error messages (never the whole URL).
    public var host: String {
        endpoint.split(separator: "/").dropFirst().first.map(String.init) ?? endpoint
    }

    /// Sends one operation and returns the body of its 2xx answer. A failure becomes the
    /// service's error through `describe`, which also says whether it is transient; transient
    /// failures are retried up to the backoff's attempts, the last one is thrown.
    public func call<ServiceError: Error>(
        _ operation: String, body: [UInt8],
        describe: (Failure) -> (error: ServiceError, transient: Bool)
    ) async throws(ServiceError) -> [UInt8] {
        do {
            return try await attempts(operation, body: body, describe: describe)
        } catch {
            throw error.error
        }
    }

    /// A failed attempt, as the service described it.
    private struct Attempt<ServiceError: Error>: Error {
        let error: ServiceError
        let transient: Bool
    }

    private func attempts<ServiceError: Error>(
        _ operation: String, body: [UInt8], describe: (Failure) -> (error: ServiceError, transient: Bool)
    ) async throws(Attempt<ServiceError>) -> [UInt8] {
        try await backoff.run(clock: clock) { (_: Int) async throws(Attempt<ServiceError>) -> [UInt8] in
            let headers = signer.sign(
                method: "POST", url: endpoint + "/",
                headers: [("Content-Type", contentType), ("X-Amz-Target", "\(targetPrefix).\(operation)")],
                body: body, date: clock.epochSeconds())
            let failure: (error: ServiceError, transient: Bool)
            do throws(TransportError) {
                let response = try await transport.send(
                    OutboundRequest(method: "POST", url: endpoint + "/", headers: headers, body: body), timeout: timeout)
                if (200..<300).contains(response.status) { return response.body }
                failure = describe(.status(response.status, body: response.body))
            } catch {
                failure = describe(.transport(error))
            }
            throw Attempt(error: failure.error, transient: failure.transient)
        } retrying: {
            $0.transient
        }
    }
}

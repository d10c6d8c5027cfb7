import AWSSigning
import Essentials
import HTTPTransport
import MetaWebhooks

/// An agent that is a Lambda function of the deployment's account: Lambda's `Invoke` API
/// (`POST /2015-03-31/functions/{FunctionName}/invocations`, `X-Amz-Invocation-Type:
/// RequestResponse`, SigV4 with the signing name `lambda`). The function gets the HTTP agent's
/// JSON (`AgentRequest`) as its event and returns the HTTP agent's answer (`{"reply",
/// "handoff"}`); it has no public endpoint at all, so nobody else can post turns to it, and the
/// stack's role may invoke only the functions its `AgentFunctionArns` parameter names.
public struct LambdaAgent: Agent {
    /// The function's name, ARN or partial ARN (a version or alias may follow `:`).
    public let function: String
    public let endpoint: String
    private let transport: any HTTPTransport
    private let signer: SigV4Signer

    private let clock: WallClock

    public init(
        function: String, region: String, endpoint: String? = nil, credentials: AWSCredentials, transport: any HTTPTransport,
        clock: WallClock = .system
    ) {
        self.clock = clock
        self.function = function
        let base = endpoint ?? "https://lambda.\(region).amazonaws.com"
        self.endpoint = base.hasSuffix("/") ? String(base.dropLast()) : base
        self.transport = transport
        self.signer = SigV4Signer(credentials: credentials, region: region, service: "lambda")
    }

    public func reply(to request: AgentRequest, timeout: Duration) async throws(AgentError) -> AgentReply {
        guard let body = try? JSONNodeEncoder.encode(request) else { throw AgentError(.invalidResponse, "the request cannot be encoded") }
        let url = "\(endpoint)/2015-03-31/functions/\(SigV4Signer.uriEncode(function))/invocations"
        let headers = signer.sign(
            method: "POST", url: url, headers: [("Content-Type", "application/json"), ("X-Amz-Invocation-Type", "RequestResponse")],
            body: Array(body), date: clock.epochSeconds())
        let response: OutboundResponse
        do {
            response = try await transport.send(OutboundRequest(method: "POST", url: url, headers: headers, body: Array(body)), timeout: timeout)
        } catch {
            throw AgentError(error.kind == .timeout ? .timeout : .unavailable, "Lambda: \(error.message)")
        }
        guard (200..<300).contains(response.status) else {
            let type = response.header("x-amzn-ErrorType")?.split(separator: ":").first.map(String.init) ?? "HTTP \(response.status)"
            throw Self.error(type: type, status: response.status)
        }
        // The function itself failed (it threw, timed out, ran out of memory): its error's
        // text is the function's, and stays out of our logs beyond its type.
        if let failure = response.header("X-Amz-Function-Error") {
            let type = (try? JSON.parse(response.body))?["errorType"]?.string.map { String($0.prefix(100)) } ?? "unknown"
            throw AgentError(.unavailable, "Lambda: the function failed (\(failure.prefix(20)), \(type))")
        }
        return try HTTPAgent.reading(response.body, from: "the Lambda agent")
    }

    /// Lambda's error names as typed agent errors: throttling is worth a retry, a missing
    /// function or a refused permission is not.
    static func error(type: String, status: Int) -> AgentError {
        let detail = "Lambda \(type)"
        switch (type, status) {
        case ("TooManyRequestsException", _), (_, 429): return AgentError(.throttled, detail)
        case ("ResourceNotFoundException", _), ("AccessDeniedException", _), ("InvalidRequestContentException", _),
            ("RequestTooLargeException", _), (_, 400...404):
            return AgentError(.refused, detail)
        default: return AgentError(.unavailable, detail)
        }
    }
}

/// An error that carries its own outcome, as Hummingbird's `HTTPResponseError` does: the
/// HTTP status and error code an API Gateway route answers with, and (as every
/// `FunctionError`) the `errorType` a direct invocation reports. Handlers throw; the one
/// mapping from error to response is `response` below, applied by `HTTPFunction`.
public protocol HTTPResponseError: FunctionError {
    /// The status of the proxy response.
    var status: Int { get }
    /// The `error` code of the JSON body (the `errorType` unless a route's contract names
    /// its codes otherwise).
    var code: String { get }
}

extension HTTPResponseError {
    public var code: String { errorType }

    /// `{"error": code, "message": errorMessage}` with the error's status.
    public var response: HTTPResponse { .error(status, code: code, message: errorMessage) }
}

/// A request an HTTP route refuses, in our own words (never an upstream's).
public struct RequestRefused: HTTPResponseError, Equatable {
    public let status: Int
    public let code: String
    public let errorMessage: String
    public var errorType: String { code }

    public init(_ status: Int, code: RefusalCode, _ message: String) {
        self.status = status
        self.code = code.rawValue
        self.errorMessage = message
    }
}

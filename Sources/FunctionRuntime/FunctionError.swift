/// A failure that the Lambda service reports as a function error: in local mode it is
/// printed as `{"errorType": ..., "errorMessage": ...}` with exit code 1, in Lambda mode it is
/// posted to `/runtime/invocation/{id}/error`. Messages never carry secrets.
public protocol FunctionError: Error, Sendable {
    var errorType: String { get }
    var errorMessage: String { get }
}

/// A required setting is missing or invalid: exit code 2 in local mode, `/runtime/init/error`
/// in Lambda mode. Names the variable, never its value.
public struct ConfigurationError: Error, Sendable, Equatable, CustomStringConvertible {
    public let variable: String
    public let problem: String

    public init(variable: String, problem: String = "is required") {
        self.variable = variable
        self.problem = problem
    }

    public var description: String { "configuration error: \(variable) \(problem)" }
}

/// The JSON body of a function error, the same in both modes.
package struct ErrorDocument: Codable {
    package let errorType: String
    package let errorMessage: String

    init(_ error: any Error) {
        if let error = error as? any FunctionError {
            errorType = error.errorType
            errorMessage = error.errorMessage
        } else {
            errorType = String(describing: type(of: error))
            errorMessage = String(describing: error)
        }
    }

    package init(errorType: String, errorMessage: String) {
        self.errorType = errorType
        self.errorMessage = errorMessage
    }
}

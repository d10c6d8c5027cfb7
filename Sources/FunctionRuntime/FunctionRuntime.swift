import Essentials
import Logging

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// What one executable does with one event: raw event bytes in, raw response bytes out.
public protocol FunctionHandler: Sendable {
    func handle(event: [UInt8], context: InvocationContext) async throws -> [UInt8]
}

/// A function behind API Gateway: the event is decoded into an `HTTPRequest` (either payload
/// format) and the `HTTPResponse` is encoded back as a proxy response. An event that is not an
/// API Gateway event is a function error (`InvalidEvent`).
public struct HTTPFunction: FunctionHandler {
    private let body: @Sendable (HTTPRequest, InvocationContext) async throws -> HTTPResponse

    public init(_ body: @escaping @Sendable (HTTPRequest, InvocationContext) async throws -> HTTPResponse) {
        self.body = body
    }

    /// The handler's response, or the response of the `HTTPResponseError` it threw; any other
    /// error is a function error (API Gateway answers it with a 502, as in AWS).
    public func handle(event: [UInt8], context: InvocationContext) async throws -> [UInt8] {
        let request = try APIGatewayEvent.decode(event)
        do {
            return APIGatewayEvent.encode(try await body(request, context))
        } catch let error as any HTTPResponseError {
            return APIGatewayEvent.encode(error.response)
        }
    }
}

/// The Lambda Runtime API paths and headers (AWS Lambda Developer Guide, "Using the Lambda
/// runtime API for custom runtimes"), kept in one place.
enum RuntimeAPI {
    static let next = "/2018-06-01/runtime/invocation/next"
    static func response(_ id: String) -> String { "/2018-06-01/runtime/invocation/\(id)/response" }
    static func error(_ id: String) -> String { "/2018-06-01/runtime/invocation/\(id)/error" }
    static let initError = "/2018-06-01/runtime/init/error"

    static let requestIDHeader = "Lambda-Runtime-Aws-Request-Id"
    static let deadlineHeader = "Lambda-Runtime-Deadline-Ms"
    static let traceIDHeader = "Lambda-Runtime-Trace-Id"
    static let functionARNHeader = "Lambda-Runtime-Invoked-Function-Arn"
    static let errorTypeHeader = "Lambda-Runtime-Function-Error-Type"
}

/// Runs one executable: local mode (one event from stdin or a file, one JSON document on stdout)
/// or, when `AWS_LAMBDA_RUNTIME_API` is set, the Lambda Runtime API loop.
public enum FunctionRuntime {
    /// `makeHandler` reads the configuration it needs from the environment once; a
    /// `ConfigurationError` it throws is reported before any event is read.
    public static func run(
        _ name: String,
        makeHandler: @Sendable (Environment, Logger) async throws -> any FunctionHandler
    ) async -> Never {
        let environment = Environment.current()
        do {
            try JSONLogHandler.bootstrap(environment: environment)
        } catch {
            fail(configuration: error, environment: environment)
        }
        let logger = Logger(label: name)
        // One invocation at a time, in either mode: its tasks may wait for the disk in place.
        await DiskWaits.$inPlace.withValue(true) {
            if let endpoint = environment["AWS_LAMBDA_RUNTIME_API"] {
                await runLambdaLoop(endpoint: endpoint, environment: environment, logger: logger, makeHandler: makeHandler)
            } else {
                await runLocal(environment: environment, logger: logger, makeHandler: makeHandler)
            }
        }
    }

    // MARK: Local mode

    private static func runLocal(
        environment: Environment, logger: Logger,
        makeHandler: @Sendable (Environment, Logger) async throws -> any FunctionHandler
    ) async -> Never {
        let timeout: Double
        do {
            // Lambda allows at most 900 s.
            timeout = try environment.decimal("FUNCTION_TIMEOUT_SECONDS", in: 0.1...900, default: 30)
        } catch {
            fail(configuration: error, environment: environment)
        }
        let handler: any FunctionHandler
        do {
            handler = try await makeHandler(environment, logger)
        } catch let error as ConfigurationError {
            fail(configuration: error, environment: environment)
        } catch {
            printError(ErrorDocument(error))
            exit(1)
        }

        let arguments = CommandLine.arguments.dropFirst()
        let input: [UInt8]
        switch arguments.count {
        case 0:
            guard let bytes = readAll(fd: STDIN_FILENO) else {
                writeStderr("cannot read the event from stdin")
                exit(2)
            }
            input = bytes
        case 1:
            let path = arguments[arguments.startIndex]
            let fd = open(path, O_RDONLY)
            guard fd >= 0, let bytes = readAll(fd: fd) else {
                writeStderr("cannot read the event file \(path): \(String(cString: strerror(errno)))")
                exit(2)
            }
            close(fd)
            input = bytes
        default:
            writeStderr("usage: \(CommandLine.arguments[0]) [EVENT_FILE]   (or the event on stdin)")
            exit(2)
        }

        var invocationLogger = logger
        let requestID = "local-\(UInt64.random(in: 0...UInt64.max) % 1_000_000_000)"
        invocationLogger[metadataKey: "requestId"] = "\(requestID)"
        let context = InvocationContext(
            requestID: requestID, deadline: WallClock.system.instant() + .milliseconds(Int64(timeout * 1000)),
            traceID: environment["_X_AMZN_TRACE_ID"], logger: invocationLogger)
        do {
            let output = try await context.bounded { try await handler.handle(event: input, context: context) }
            writeStdout(output)
            await context.afterResponse.run(before: context.deadline)
            exit(0)
        } catch {
            printError(ErrorDocument(error))
            await context.afterResponse.run(before: context.deadline)
            exit(1)
        }
    }

    // MARK: Lambda mode

    private static func runLambdaLoop(
        endpoint: String, environment: Environment, logger: Logger,
        makeHandler: @Sendable (Environment, Logger) async throws -> any FunctionHandler
    ) async -> Never {
        let client: RuntimeAPIClient
        do {
            client = try RuntimeAPIClient(endpoint: endpoint)
        } catch {
            writeStderr(error.description)
            exit(2)
        }

        // The loop returns only when it cannot go on; the process ends here, at its edge.
        _ = await LambdaLoop.run(client, environment: environment, logger: logger, makeHandler: makeHandler)
        exit(1)
    }

    // MARK: Output

    private static func fail(configuration: ConfigurationError, environment: Environment) -> Never {
        writeStderr(configuration.description)
        exit(2)
    }

    /// `{"errorMessage","errorType"}`, keys sorted.
    package static func encode(_ document: ErrorDocument) -> [UInt8] {
        var writer = JSONWriter()
        writer.raw(#"{"errorMessage":"#)
        writer.string(document.errorMessage)
        writer.raw(#","errorType":"#)
        writer.string(document.errorType)
        writer.raw("}")
        return writer.bytes
    }

    private static func printError(_ document: ErrorDocument) {
        writeStdout(encode(document))
    }

    private static func writeStdout(_ bytes: [UInt8]) { Output.stdout(bytes) }

    private static func writeStderr(_ line: String) { Output.stderr(line) }

    private static func readAll(fd: Int32) -> [UInt8]? {
        var result: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                return nil
            }
            if count == 0 { return result }
            result.append(contentsOf: chunk[0..<count])
        }
    }
}

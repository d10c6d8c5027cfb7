import FunctionRuntime
import HTTPTransport
import LocalHTTPServer
import Logging
import MetaConnect
import MetaMessaging
import MetaWebhooks

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// The routes of SPEC section 3 on one local server. A function whose configuration is
/// missing answers 503 naming the variable, so the others still run.
///
/// Routes that act for a tenant (in AWS they sit behind IAM or a JWT authorizer) need
/// `Authorization: Bearer <SERVE_API_KEY>` here, since `serve` is meant to be reachable through
/// a tunnel; Meta's own routes (verification, webhooks, the OAuth callback) stay open, as in AWS.
struct LocalGateway: Sendable {
    static let maxBodyBytes = 6 * 1024 * 1024
    enum Route: Sendable {
        case ready(any FunctionHandler)
        case unavailable(String)
    }

    let routes: [String: Route]
    let logger: Logger
    private let apiKey: [UInt8]

    init(environment: Environment, transport: any HTTPTransport, logger: Logger, apiKey: String) {
        self.apiKey = Array(apiKey.utf8)
        let services = Result { () throws(ConfigurationError) in try Services(environment: environment, transport: transport) }
        func route(_ make: () throws -> any FunctionHandler) -> Route {
            do { return .ready(try make()) } catch let error as ConfigurationError {
                return .unavailable(error.description)
            } catch {
                return .unavailable("\(error)")
            }
        }
        // One handler per function, built once; the routes come from the product's one table.
        let functions: [String: Route] = [
            "verify": route { try VerifyHandler(environment: environment).function },
            "receive": route { try services.get().receiveHandler().function },
            "auth-url": route { try AuthURLHandler(environment: environment).function },
            "oauth-callback": route { try services.get().connectFunction() },
            "send": route { try services.get().sendHandler().function },
            "connections": route { try services.get().connectionsHandler().function },
        ]
        var routes: [String: Route] = [:]
        for entry in Routes.all { routes[entry.key] = functions[entry.function] ?? .unavailable("no function named \(entry.function)") }
        self.routes = routes
        self.logger = logger
    }

    var routeSummary: String {
        routes.keys.sorted().map { key in
            if case .unavailable(let reason) = routes[key] { "\(key) (unavailable: \(reason))" } else { key }
        }.joined(separator: ", ")
    }

    func handle(_ request: HTTPServer.Request) async -> HTTPServer.Response {
        let start = ContinuousClock.now
        let requestID = OAuthState.randomNonce()
        var logger = self.logger
        logger[metadataKey: "requestId"] = "\(requestID)"
        let response = await dispatch(request, requestID: requestID, logger: logger)
        let elapsed = ContinuousClock.now - start
        logger.info(
            "\(request.method) \(request.path) \(response.status)",
            metadata: [
                "durationMs": "\(elapsed.components.seconds * 1000 + elapsed.components.attoseconds / 1_000_000_000_000_000)"
            ])
        return response
    }

    private func dispatch(_ request: HTTPServer.Request, requestID: String, logger: Logger) async -> HTTPServer.Response {
        let (found, pathKnown) = Routes.route(method: request.method, path: request.path)
        guard let found, let route = routes[found.key] else {
            return Self.json(pathKnown ? 405 : 404, ["message": pathKnown ? "Method Not Allowed" : "Not Found"])
        }
        if found.access == .tenant, !authorized(request) {
            logger.warning("refused: no valid credential for a tenant route")
            var response = Self.json(401, ["message": "this route needs Authorization: Bearer <SERVE_API_KEY>"])
            response.headers.append(("WWW-Authenticate", "Bearer"))
            return response
        }
        guard case .ready(let handler) = route else {
            if case .unavailable(let reason) = route { return Self.json(503, ["message": "this function is not configured: \(reason)"]) }
            return Self.json(503, ["message": "unavailable"])
        }
        let key = found.key
        let event = Self.event(for: request, routeKey: key, requestID: requestID)
        let context = InvocationContext(requestID: requestID, deadline: .now + .seconds(30), logger: logger)
        do {
            let output = try await context.bounded { try await handler.handle(event: event, context: context) }
            if !context.afterResponse.isEmpty {
                // As in Lambda: the answer does not wait for the handler's later work.
                Task { await context.afterResponse.run(before: context.deadline) }
            }
            return Self.response(fromProxy: output)
        } catch {
            // What API Gateway answers when the function fails.
            logger.error("function error", metadata: ["error": "\(error)"])
            return Self.json(502, ["message": "Internal Server Error"])
        }
    }

    /// Whether the request carries `Authorization: Bearer <the key>` (compared in constant time).
    func authorized(_ request: HTTPServer.Request) -> Bool {
        guard let value = request.header("authorization") else { return false }
        let scheme = "bearer "
        guard value.utf8.count > scheme.utf8.count, value.lowercased().hasPrefix(scheme) else { return false }
        return constantTimeEquals(Array(value.utf8.dropFirst(scheme.utf8.count)), apiKey)
    }

    /// The HTTP API payload 2.0 event for a request; the body travels base64-encoded, so its
    /// bytes reach the function untouched (Meta's signature covers them).
    static func event(for request: HTTPServer.Request, routeKey: String, requestID: String) -> [UInt8] {
        var headers: [String: JSON] = [:]
        var cookies: [JSON] = []
        for (name, value) in request.headers {
            let lower = name.lowercased()
            if lower == "cookie" {
                cookies += value.split(separator: ";").map { .string($0.drop { $0 == " " }.description) }
                continue
            }
            headers[lower] = .string(headers[lower]?.string.map { "\($0),\(value)" } ?? value)
        }
        var query: [String: JSON] = [:]
        for (name, values) in QueryString.parse(request.queryString) { query[name] = .string(values.joined(separator: ",")) }
        var event: [String: JSON] = [
            "version": "2.0", "routeKey": .string(routeKey), "rawPath": .string(request.path),
            "rawQueryString": .string(request.queryString), "headers": .dictionary(headers),
            "requestContext": [
                "http": [
                    "method": .string(request.method), "path": .string(request.path), "protocol": "HTTP/1.1",
                    "sourceIp": .string(request.remoteAddress ?? "127.0.0.1"), "userAgent": .string(request.header("user-agent") ?? ""),
                ],
                "requestId": .string(requestID), "routeKey": .string(routeKey), "stage": "$default",
            ],
            "isBase64Encoded": .bool(!request.body.isEmpty),
        ]
        if !query.isEmpty { event["queryStringParameters"] = .dictionary(query) }
        if !cookies.isEmpty { event["cookies"] = .array(cookies) }
        if !request.body.isEmpty { event["body"] = .string(Data(request.body).base64EncodedString()) }
        return JSON.dictionary(event).encoded()
    }

    static func response(fromProxy output: [UInt8]) -> HTTPServer.Response {
        guard let proxy = try? JSON.parse(output), let status = proxy["statusCode"]?.int64, (100...599).contains(status) else {
            return json(502, ["message": "the function's answer is not an API Gateway proxy response"])
        }
        var headers: [(String, String)] = []
        for (name, value) in proxy["headers"]?.object ?? [:] { if let value = value.string { headers.append((name, value)) } }
        var body = Array((proxy["body"]?.string ?? "").utf8)
        if proxy["isBase64Encoded"]?.bool == true, let decoded = Data(base64Encoded: proxy["body"]?.string ?? "") {
            body = Array(decoded)
        }
        return HTTPServer.Response(status: Int(status), headers: headers, body: body)
    }

    static func json(_ status: Int, _ object: [String: String]) -> HTTPServer.Response {
        HTTPServer.Response(
            status: status, headers: [("Content-Type", "application/json")],
            body: JSON.dictionary(object.mapValues { .string($0) }).encoded())
    }
}

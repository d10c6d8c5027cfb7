// serve: every function behind one HTTP server on the developer's machine (no Docker).
// Each request becomes the API Gateway HTTP API (payload 2.0) event the function receives in
// Lambda and is handed to the same handler, in process, with the same environment variables.
//   PORT=3003 HOST=127.0.0.1 .build/debug/serve
import AsyncHTTPTransport
import FunctionRuntime
import LocalHTTPServer
import Logging
import MetaMessaging
#if canImport(Glibc)
import Glibc
#endif

let environment = Environment.current()
do {
    try JSONLogHandler.bootstrap(environment: environment)
} catch {
    Output.fail(error.description)
}
let logger = Logger(label: "serve")
let gateway = LocalGateway(environment: environment, transport: AsyncHTTPTransport(), logger: logger)
let port = Int(environment["PORT"] ?? "3003") ?? 3003
let host = environment["HOST"] ?? "127.0.0.1"

let server: HTTPServer
do {
    server = try await HTTPServer(host: host, port: port, maxBodyBytes: LocalGateway.maxBodyBytes, threads: 2) { request in
        await gateway.handle(request)
    }
} catch {
    Output.fail("serve: \(error) (set PORT to use another port)")
}
logger.info("listening on http://\(host):\(server.port)", metadata: ["routes": "\(gateway.routeSummary)"])

// Graceful shutdown: stop accepting, let requests in flight finish, exit 0.
for await number in ShutdownSignals.stream() {
    logger.info("shutting down", metadata: ["signal": "\(number)"])
    break
}
await server.shutdown()
logger.info("stopped")
exit(0)

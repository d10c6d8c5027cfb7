// serve: every function behind one HTTP server on the developer's machine (no Docker).
// Each request becomes the API Gateway HTTP API (payload 2.0) event the function receives in
// Lambda and is handed to the same handler, in process, with the same environment variables.
//   PORT=3003 HOST=127.0.0.1 .build/debug/serve
import FunctionRuntime
import LocalHTTPServer
import Logging
import MetaConnect
import MetaMessaging
import NIOHTTPTransport

#if canImport(Glibc)
import Glibc
#endif

var environment = Environment.current()
let port: Int
do {
    port = Int(try environment.integer("PORT", in: 0...65535, default: 3003))
} catch {
    Output.fail(error.description)
}
let host = environment["HOST"] ?? "127.0.0.1"

// The credential of the routes that act for a tenant: SERVE_API_KEY, or one made for this run.
let apiKey: String
var keyWasMade = false
if let configured = environment["SERVE_API_KEY"] {
    guard configured.utf8.count >= 16 else { Output.fail("configuration error: SERVE_API_KEY must be at least 16 characters") }
    apiKey = configured
} else {
    apiKey = OAuthState.randomNonce() + OAuthState.randomNonce()
    environment = Environment(environment.values.merging(["SERVE_API_KEY": apiKey]) { $1 })
    keyWasMade = true
}
do {
    try JSONLogHandler.bootstrap(environment: environment)
} catch {
    Output.fail(error.description)
}
let logger = Logger(label: "serve")
let gateway = LocalGateway(environment: environment, transport: NIOHTTPTransport(), logger: logger, apiKey: apiKey)

let server: HTTPServer
do {
    server = try await HTTPServer(host: host, port: port, limits: HTTPServer.Limits(maxBodyBytes: LocalGateway.maxBodyBytes), threads: 2) { request in
        await gateway.handle(request)
    }
} catch {
    Output.fail("serve: \(error) (set PORT to use another port)")
}
if keyWasMade {
    let shown = host.contains(":") ? "[\(host)]" : host
    Output.stderr(
        """
        serve: SERVE_API_KEY is not set, so this run made one. The routes that act for a tenant \
        (POST /messages, GET /external/meta/auth-url) need it:
          export SERVE_API_KEY=\(apiKey)
          curl -H "Authorization: Bearer $SERVE_API_KEY" "http://\(shown):\(server.port)/external/meta/auth-url?businessId=B0100001&locationId=L0100001"
        """)
}
logger.info("listening on http://\(host):\(server.port)", metadata: ["routes": "\(gateway.routeSummary)"])

// `refresh` on a timer, as the daily schedule runs it in AWS: Instagram-Login tokens renewed
// before they expire (REFRESH_INTERVAL_SECONDS, a day by default; 0 turns it off).
let refreshInterval: Int64
do {
    refreshInterval = try environment.integer("REFRESH_INTERVAL_SECONDS", in: 0...(30 * 24 * 3600), default: 24 * 3600)
} catch {
    Output.fail(error.description)
}
let refresher: Task<Void, Never>? =
    refreshInterval == 0
    ? nil
    : Task {
        let refresh: RefreshHandler
        do {
            refresh = try Services(environment: environment, transport: NIOHTTPTransport()).refreshHandler()
        } catch {
            logger.warning("token refresh is off: \(error)")
            return
        }
        while !Task.isCancelled {
            do {
                _ = try await refresh.run(deadline: .now + .seconds(300), logger: logger)
            } catch {
                logger.error("token refresh failed: tried again next time", metadata: ["error": "\(error)"])
            }
            try? await Task.sleep(for: .seconds(refreshInterval))
        }
    }

// The minute's schedule of `process`, as in AWS: pauses that ended with the customer's
// messages waiting are offered to the agent once (locations with answerAfterPause).
let offering: Task<Void, Never> = Task {
    let process: ProcessHandler
    do {
        process = try Services(environment: environment, transport: NIOHTTPTransport()).processHandler()
    } catch {
        logger.warning("ended pauses are not offered to the agent: \(error)")
        return
    }
    while !Task.isCancelled {
        try? await Task.sleep(for: .seconds(60))
        let context = InvocationContext(requestID: OAuthState.randomNonce(), deadline: .now + .seconds(50), logger: logger)
        _ = await process.offerWaitingAfterPauses(context: context)
    }
}

// Graceful shutdown: stop accepting, let requests in flight finish, exit 0.
for await number in ShutdownSignals.stream() {
    logger.info("shutting down", metadata: ["signal": "\(number)"])
    break
}
refresher?.cancel()
offering.cancel()
await server.shutdown()
logger.info("stopped")
exit(0)

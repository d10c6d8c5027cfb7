// connections: a tenant's leaving (disconnect) and Meta's deauthorize and data-deletion
// callbacks, with the deletion status page.
import AsyncHTTPTransport
import FunctionRuntime
import MetaMessaging

await FunctionRuntime.run("connections") { environment, _ in
    try Services(environment: environment, transport: AsyncHTTPTransport()).connectionsHandler().function
}

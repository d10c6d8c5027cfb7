// connections: a tenant's leaving (disconnect) and Meta's deauthorize and data-deletion
// callbacks, with the deletion status page.
import FunctionRuntime
import MetaMessaging
import NIOHTTPTransport

await FunctionRuntime.run("connections") { environment, _ in
    let transport = NIOHTTPTransport()
    return try Services(environment: try await DeploymentSecrets.resolve(environment, transport: transport), transport: transport).connectionsHandler().function
}

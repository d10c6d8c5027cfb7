import FunctionRuntime
import MetaMessaging
import NIOHTTPTransport

await FunctionRuntime.run("refresh") { environment, _ in
    let transport = NIOHTTPTransport()
    return try Services(environment: try await DeploymentSecrets.resolve(environment, transport: transport), transport: transport).refreshHandler().function
}

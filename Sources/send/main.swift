import FunctionRuntime
import MetaMessaging
import NIOHTTPTransport

await FunctionRuntime.run("send") { environment, _ in
    let transport = NIOHTTPTransport()
    return try Services(environment: try await DeploymentSecrets.resolve(environment, transport: transport), transport: transport).sendHandler().function
}

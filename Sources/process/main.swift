import FunctionRuntime
import MetaMessaging
import NIOHTTPTransport

await FunctionRuntime.run("process") { environment, _ in
    let transport = NIOHTTPTransport()
    return try Services(environment: try await DeploymentSecrets.resolve(environment, transport: transport), transport: transport).processHandler().function
}

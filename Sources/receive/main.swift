import FunctionRuntime
import MetaMessaging
import NIOHTTPTransport

await FunctionRuntime.run("receive") { environment, _ in
    let transport = NIOHTTPTransport()
    return try Services(environment: try await DeploymentSecrets.resolve(environment, transport: transport), transport: transport).receiveHandler().function
}

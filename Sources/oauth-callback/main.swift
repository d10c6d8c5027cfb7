import FunctionRuntime
import MetaMessaging
import NIOHTTPTransport

await FunctionRuntime.run("oauth-callback") { environment, _ in
    let transport = NIOHTTPTransport()
    return try Services(environment: try await DeploymentSecrets.resolve(environment, transport: transport), transport: transport).connectFunction()
}

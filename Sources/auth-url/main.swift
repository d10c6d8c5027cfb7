import FunctionRuntime
import MetaConnect
import MetaMessaging
import NIOHTTPTransport

await FunctionRuntime.run("auth-url") { environment, _ in
    // The state secret (and Instagram Login's) from Secrets Manager in Lambda.
    try AuthURLHandler(environment: try await DeploymentSecrets.resolve(environment, transport: NIOHTTPTransport())).function
}

import FunctionRuntime
import MetaMessaging

await FunctionRuntime.run("auth-url") { environment, _ in
    try AuthURLHandler(config: OAuthConfig(environment: environment)).function
}

import FunctionRuntime
import MetaMessaging

await FunctionRuntime.run("auth-url") { environment, _ in
    try AuthURLHandler(environment: environment).function
}

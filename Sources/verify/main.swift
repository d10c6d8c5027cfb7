import FunctionRuntime
import MetaMessaging

await FunctionRuntime.run("verify") { environment, _ in
    try VerifyHandler(environment: environment).function
}

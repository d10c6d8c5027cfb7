import AsyncHTTPTransport
import FunctionRuntime
import MetaMessaging

await FunctionRuntime.run("oauth-callback") { environment, _ in
    try Services(environment: environment, transport: AsyncHTTPTransport()).connectFunction()
}

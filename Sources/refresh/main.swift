import AsyncHTTPTransport
import FunctionRuntime
import MetaMessaging

await FunctionRuntime.run("refresh") { environment, _ in
    try Services(environment: environment, transport: AsyncHTTPTransport()).refreshHandler().function
}

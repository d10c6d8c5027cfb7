import AsyncHTTPTransport
import FunctionRuntime
import MetaMessaging

await FunctionRuntime.run("send") { environment, _ in
    try Services(environment: environment, transport: AsyncHTTPTransport()).sendHandler().function
}

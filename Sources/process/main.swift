import AsyncHTTPTransport
import FunctionRuntime
import MetaMessaging

await FunctionRuntime.run("process") { environment, _ in
    try Services(environment: environment, transport: AsyncHTTPTransport()).processHandler().function
}

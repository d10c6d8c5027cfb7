import AsyncHTTPTransport
import FunctionRuntime
import MetaMessaging

await FunctionRuntime.run("receive") { environment, _ in
    try Services(environment: environment, transport: AsyncHTTPTransport()).receiveHandler().function
}

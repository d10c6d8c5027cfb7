import FunctionRuntime
import MetaMessaging
import NIOHTTPTransport

await FunctionRuntime.run("process") { environment, _ in
    try Services(environment: environment, transport: NIOHTTPTransport()).processHandler().function
}

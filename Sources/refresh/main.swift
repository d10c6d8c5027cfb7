import FunctionRuntime
import MetaMessaging
import NIOHTTPTransport

await FunctionRuntime.run("refresh") { environment, _ in
    try Services(environment: environment, transport: NIOHTTPTransport()).refreshHandler().function
}

import FunctionRuntime
import MetaMessaging
import NIOHTTPTransport

await FunctionRuntime.run("send") { environment, _ in
    try Services(environment: environment, transport: NIOHTTPTransport()).sendHandler().function
}

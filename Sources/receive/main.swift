import FunctionRuntime
import MetaMessaging
import NIOHTTPTransport

await FunctionRuntime.run("receive") { environment, _ in
    try Services(environment: environment, transport: NIOHTTPTransport()).receiveHandler().function
}

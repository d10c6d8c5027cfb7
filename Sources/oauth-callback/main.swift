import FunctionRuntime
import MetaMessaging
import NIOHTTPTransport

await FunctionRuntime.run("oauth-callback") { environment, _ in
    try Services(environment: environment, transport: NIOHTTPTransport()).connectFunction()
}

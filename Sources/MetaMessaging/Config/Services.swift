import AWSSigning
import Essentials
import FunctionRuntime
import HTTPTransport
import KeyValueStore
import MetaAgents
import MetaConnect
import MetaGraph
import MetaTelemetry
import MetaTenancy
import MetaWebhooks

/// Builds what the handlers need from the environment, once, at start-up. A missing or
/// invalid variable is a `ConfigurationError` naming it (SPEC section 5).
public struct Services: Sendable {
    public let environment: Environment
    public let transport: any HTTPTransport
    public let tables: Tables
    /// The one clock every handler, store and client is given (the system's, but for tests).
    public let clock: WallClock

    public init(environment: Environment, transport: any HTTPTransport, clock: WallClock = .system) throws(ConfigurationError) {
        self.clock = clock
        self.environment = environment
        self.transport = transport
        self.tables = try Tables(environment: environment)
    }

    public func appSecret() throws(ConfigurationError) -> String {
        try environment.required("META_APP_SECRET")
    }

    /// `KV_BACKEND`: `file` (the local default) or `dynamodb` (the default in Lambda).
    public func store() throws(ConfigurationError) -> any KeyValueStore {
        let backend = try environment.choice("KV_BACKEND", of: ["file", "dynamodb"], default: environment.isLambda ? "dynamodb" : "file")
        switch backend {
        case "file":
            let directory = environment.value("KV_FILE_DIR", default: ".data")
            do {
                return try FileStore(directory: directory, tables: tables.all, now: clock.epochSeconds)
            } catch {
                throw ConfigurationError(variable: "KV_FILE_DIR", problem: "names a folder that cannot be used (\(error.message))")
            }
        default:
            let region = try environment.required("AWS_REGION")
            guard let credentials = AWSCredentials.fromEnvironment(environment.values) else {
                throw ConfigurationError(variable: "AWS_ACCESS_KEY_ID", problem: "and AWS_SECRET_ACCESS_KEY are required for KV_BACKEND=dynamodb")
            }
            return DynamoDBStore(
                transport: transport, region: region, endpoint: environment["DYNAMODB_ENDPOINT"], credentials: credentials, clock: clock)
        }
    }

    /// The tenancy tables, dated by the clock.
    public func directory(store: any KeyValueStore, cache: TenancyCache? = nil) -> TenantDirectory {
        let clock = clock
        return TenantDirectory(store: store, tables: tables, now: { ISO8601.format(epochSeconds: clock.epochSeconds()) }, cache: cache)
    }

    public func conversations(store: any KeyValueStore) -> Conversations {
        Conversations(store: store, table: tables.conversations, clock: clock)
    }

    public func graph() throws(ConfigurationError) -> GraphClient {
        GraphClient(
            transport: transport,
            baseURL: environment.value("META_GRAPH_API_BASE_URL", default: "https://graph.facebook.com"),
            version: environment.value("META_GRAPH_API_VERSION", default: "v25.0"),
            appSecret: try appSecret())
    }

    /// `AGENT_BACKEND`: `echo` (default), `http` (`AGENT_HTTP_URL`), `bedrock-agent`.
    public func agent() throws(ConfigurationError) -> any Agent {
        switch try environment.choice("AGENT_BACKEND", of: ["echo", "http", "bedrock-agent"], default: "echo") {
        case "http":
            let url = try environment.required("AGENT_HTTP_URL")
            guard url.hasPrefix("http://") || url.hasPrefix("https://") else {
                throw ConfigurationError(variable: "AGENT_HTTP_URL", problem: "must be an http(s) URL")
            }
            return HTTPAgent(url: url, transport: transport, secret: try agentSecret(), clock: clock)
        case "bedrock-agent":
            let agentId = try environment.required("BEDROCK_AGENT_ID")
            let aliasId = try environment.required("BEDROCK_AGENT_ALIAS_ID")
            let region = try environment.required("AWS_REGION")
            guard let credentials = AWSCredentials.fromEnvironment(environment.values) else {
                throw ConfigurationError(variable: "AWS_ACCESS_KEY_ID", problem: "and AWS_SECRET_ACCESS_KEY are required for AGENT_BACKEND=bedrock-agent")
            }
            return BedrockAgent(
                agentId: agentId, agentAliasId: aliasId, region: region,
                endpoint: environment["BEDROCK_AGENT_ENDPOINT"], credentials: credentials, transport: transport, clock: clock)
        default:
            return EchoAgent(template: environment.value("AGENT_ECHO_TEMPLATE", default: "Echo: {text}"))
        }
    }

    /// `AGENT_HTTP_SECRET`: the key every HTTP agent request is signed with (at least 32
    /// characters). Required in Lambda, where an agent's URL is reachable by anyone who learns
    /// it; optional locally (unsigned requests then).
    func agentSecret() throws(ConfigurationError) -> [UInt8]? {
        guard let secret = try deploymentAgentSecret() else {
            if environment.isLambda {
                throw ConfigurationError(
                    variable: "AGENT_HTTP_SECRET", problem: "is required with AGENT_BACKEND=http in Lambda: the agent must be able to refuse others")
            }
            return nil
        }
        return secret
    }

    /// `AGENT_HTTP_SECRET` when set (checked), whatever the deployment's own agent.
    func deploymentAgentSecret() throws(ConfigurationError) -> [UInt8]? {
        guard let secret = environment["AGENT_HTTP_SECRET"], !secret.isEmpty else { return nil }
        guard secret.utf8.count >= 32, secret.utf8.count <= 512 else {
            throw ConfigurationError(variable: "AGENT_HTTP_SECRET", problem: "must be 32 to 512 characters (openssl rand -hex 32)")
        }
        return Array(secret.utf8)
    }

    /// `AGENT_LAMBDA_FUNCTIONS`: the Lambda functions (names or ARNs, comma-separated) a
    /// location may choose as its agent; the template's `AgentFunctionArns`, which the stack's
    /// role may invoke and nothing else.
    public func agentLambdaFunctions() -> [String] {
        (environment["AGENT_LAMBDA_FUNCTIONS"] ?? "").split(separator: ",").map { String($0).trimmingSpaces() }.filter { !$0.isEmpty }
    }

    /// Each location's agent by its settings, the deployment's for the rest. A location's
    /// HTTP agent reaches only public addresses (loopback too in local mode).
    public func agents() throws(ConfigurationError) -> Agents {
        Agents(
            fallback: try agent(), transport: transport, deploymentSecret: try deploymentAgentSecret(), peers: try settingsRules().peers,
            echoTemplate: environment.value("AGENT_ECHO_TEMPLATE", default: "Echo: {text}"), region: environment["AWS_REGION"],
            credentials: AWSCredentials.fromEnvironment(environment.values), lambdaEndpoint: environment["LAMBDA_ENDPOINT"],
            bedrockEndpoint: environment["BEDROCK_AGENT_ENDPOINT"], lambdaFunctions: agentLambdaFunctions(), clock: clock)
    }

    /// What a location's settings are checked against.
    public func settingsRules() throws(ConfigurationError) -> SettingsRules {
        SettingsRules(
            allowsLoopback: !environment.isLambda,
            hasDeploymentSecret: try deploymentAgentSecret() != nil || environment["AGENT_HTTP_SECRET_SET"] == "true",
            requiresSignedAgents: environment.isLambda, lambdaFunctions: agentLambdaFunctions())
    }

    /// `AGENT_TIMEOUT_MS`: how long the agent may take for one message.
    public func agentTimeout(default fallback: Duration) throws(ConfigurationError) -> Duration {
        // At most 15 minutes, Lambda's longest timeout.
        let millis = try environment.integer("AGENT_TIMEOUT_MS", in: 1...900_000, default: Int64(fallback.components.seconds) * 1000)
        return .milliseconds(millis)
    }

    public func oauthCallbackHandler() throws(ConfigurationError) -> OAuthCallbackHandler {
        let store = try store()
        return OAuthCallbackHandler(
            config: try OAuthConfig(environment: environment), appSecret: try appSecret(), graph: try graph(),
            directory: directory(store: store), ledger: try ledger(store: store), clock: clock)
    }

    public func whatsAppSignupHandler() throws(ConfigurationError) -> WhatsAppSignupHandler {
        let store = try store()
        return WhatsAppSignupHandler(
            config: try OAuthConfig(environment: environment), appSecret: try appSecret(), graph: try graph(),
            directory: directory(store: store), ledger: try ledger(store: store), clock: clock)
    }

    /// The `oauth-callback` function's three routes: the Facebook Login callback, WhatsApp
    /// Embedded Signup's result (both end a connection and spend an auth-url state), and the
    /// connect page that starts both.
    public func connectFunction() throws(ConfigurationError) -> HTTPFunction {
        let callback = try oauthCallbackHandler()
        let signup = try whatsAppSignupHandler()
        let instagram = try instagramLogin()
        let page = ConnectPageHandler(config: callback.config, directory: callback.directory, instagram: instagram, clock: clock)
        let instagramCallback = instagram.map {
            InstagramLoginHandler(login: $0, transport: transport, directory: callback.directory, ledger: callback.ledger, clock: clock)
        }
        let telemetry = try telemetry(function: "oauth-callback")
        // The person's confirmation of what a Facebook Login or Instagram Login callback found.
        let consent = ConsentHandler(
            consents: callback.consent.consents, directory: callback.directory, graph: callback.graph,
            instagramGraph: instagramCallback?.consent.instagramGraph, postConnectRedirectURI: callback.config.postConnectRedirectURI)
        return HTTPFunction { request, context in
            switch request.path {
            case ConsentHandler.confirmPath:
                return await consent.handle(request, logger: context.logger, events: telemetry.events(for: context))
            case WhatsAppSignupHandler.path:
                return try await signup.handle(request, logger: context.logger, events: telemetry.events(for: context))
            case ConnectPageHandler.path: return await page.handle(request, logger: context.logger)
            case InstagramLoginHandler.callbackPath:
                guard let instagramCallback else {
                    throw RequestRefused(503, code: .instagramLoginNotConfigured, "Instagram Login is not configured: INSTAGRAM_APP_ID is required")
                }
                return await instagramCallback.handle(request, logger: context.logger, events: telemetry.events(for: context))
            default: return await callback.handle(request, logger: context.logger, events: telemetry.events(for: context))
            }
        }
    }

    /// Business Login for Instagram, when `INSTAGRAM_APP_ID` is set (then its other variables
    /// are required).
    public func instagramLogin() throws(ConfigurationError) -> InstagramLogin? {
        InstagramLogin.isConfigured(environment) ? try InstagramLogin(environment: environment) : nil
    }

    /// The Graph API of Instagram-Login connections (`graph.instagram.com`,
    /// `INSTAGRAM_GRAPH_BASE_URL`): their own tokens, no `appsecret_proof`, so nothing else to set.
    func instagramGraph() throws(ConfigurationError) -> GraphClient? {
        GraphClient(
            transport: transport, baseURL: environment.value("INSTAGRAM_GRAPH_BASE_URL", default: "https://graph.instagram.com"),
            version: environment.value("META_GRAPH_API_VERSION", default: "v25.0"), appSecret: "", sendsAppSecretProof: false)
    }

    /// Disconnect, Meta's deauthorize and data-deletion callbacks, the deletion status page.
    public func connectionsHandler() throws(ConfigurationError) -> ConnectionsHandler {
        let store = try store()
        var handler = ConnectionsHandler(
            directory: directory(store: store), ledger: try ledger(store: store), graph: try graph(), appSecret: try appSecret(),
            appId: environment["META_APP_ID"], publicBaseURL: environment["PUBLIC_BASE_URL"], clock: clock)
        handler.telemetry = try telemetry(function: "connections")
        handler.settingsRules = try settingsRules()
        handler.settingsDefaults = try settingsDefaults()
        handler.instagramAppSecret = environment["INSTAGRAM_APP_SECRET"]
        if try environment.choice("KV_BACKEND", of: ["file", "dynamodb"], default: environment.isLambda ? "dynamodb" : "file") == "dynamodb" {
            // The template's BackupRetentionDays; 35 (DynamoDB's default) when not told.
            handler.backupRetentionDays = try environment.integer("BACKUP_RETENTION_DAYS", in: 1...35, default: 35)
        }
        return handler
    }

    /// What stands for a setting a location left out.
    public func settingsDefaults() throws(ConfigurationError) -> SettingsDefaults {
        var defaults = SettingsDefaults()
        defaults.agentBackend = try environment.choice("AGENT_BACKEND", of: ["echo", "http", "bedrock-agent"], default: "echo")
        defaults.handoffPauseMinutes = try handoffPauseSeconds() / 60
        let comments = try environment.choice("COMMENT_REPLIES", of: LocationSettings.CommentReplies.allCases.map(\.rawValue), default: "off")
        defaults.commentReplies = LocationSettings.CommentReplies(rawValue: comments) ?? .off
        defaults.senderActions = try environment.choice("SENDER_ACTIONS", of: ["on", "off"], default: "on") == "on"
        defaults.answerAfterPause = try environment.choice("ANSWER_AFTER_PAUSE", of: ["true", "false"], default: "false") == "true"
        defaults.keepTextDuringPause = try environment.choice("PAUSE_KEEPS_TEXT", of: ["true", "false"], default: "false") == "true"
        return defaults
    }

    /// What `function` reports besides its answer: the conversation log on Kinesis
    /// (`CONVERSATION_STREAM`, a stream name or ARN; `KINESIS_ENDPOINT` to point elsewhere;
    /// the text only with `CONVERSATION_STREAM_INCLUDE_TEXT=true`) and the EMF metrics
    /// (`METRICS=on|off`, `METRICS_NAMESPACE`).
    public func telemetry(function: String) throws(ConfigurationError) -> Telemetry {
        var metrics: Metrics? = nil
        if try environment.choice("METRICS", of: ["on", "off"], default: "on") == "on" {
            let namespace = environment.value("METRICS_NAMESPACE", default: "MetaMessaging")
            guard (1...255).contains(namespace.utf8.count), !namespace.hasPrefix("AWS/"),
                namespace.unicodeScalars.allSatisfy({ $0.isASCII && $0.value >= 0x20 && $0 != ":" })
            else {
                throw ConfigurationError(variable: "METRICS_NAMESPACE", problem: "must be 1 to 255 printable ASCII characters, without ':' or an AWS/ prefix")
            }
            metrics = Metrics(namespace: namespace)
        }
        var log: (any ConversationLog)? = nil
        if let stream = environment["CONVERSATION_STREAM"], !stream.isEmpty {
            guard stream.utf8.count <= 2048, stream.unicodeScalars.allSatisfy({ $0.isASCII && $0.value > 0x20 }) else {
                throw ConfigurationError(variable: "CONVERSATION_STREAM", problem: "must be a Kinesis stream name or ARN")
            }
            let region = try environment.required("AWS_REGION")
            guard let credentials = AWSCredentials.fromEnvironment(environment.values) else {
                throw ConfigurationError(variable: "AWS_ACCESS_KEY_ID", problem: "and AWS_SECRET_ACCESS_KEY are required for CONVERSATION_STREAM")
            }
            log = KinesisConversationLog(
                transport: transport, stream: stream, region: region, endpoint: environment["KINESIS_ENDPOINT"], credentials: credentials,
                clock: clock)
        }
        let includeText = try environment.choice("CONVERSATION_STREAM_INCLUDE_TEXT", of: ["true", "false"], default: "false") == "true"
        return Telemetry(function: function, log: log, metrics: metrics, includeText: includeText)
    }

    /// The exactly-once ledger. `REPLY_IN_DOUBT` is the rule for a reply that may have gone
    /// out without its outcome recorded: `skip` (default: never sent again, at most one reply)
    /// or `resend` (sent again, at least one reply, a possible duplicate).
    public func ledger(store: any KeyValueStore) throws(ConfigurationError) -> MessageLedger {
        let rule = try environment.choice("REPLY_IN_DOUBT", of: ["skip", "resend"], default: "skip")
        return MessageLedger(
            store: store, table: tables.processedMessages, clock: clock, inDoubt: MessageLedger.InDoubt(rawValue: rule) ?? .doNotSendAgain)
    }

    /// `HANDOFF_PAUSE_MINUTES` (default 60, at most 7 days): how long a person's answer or the
    /// agent's handoff pauses the agent in a conversation.
    public func handoffPauseSeconds() throws(ConfigurationError) -> Int64 {
        try environment.integer("HANDOFF_PAUSE_MINUTES", in: 1...(Conversations.maxPauseSeconds / 60), default: 60) * 60
    }

    /// The answer step, with `agentTimeout`'s default for this function. `SENDER_ACTIONS=off`
    /// turns "seen" and "typing" off (on by default).
    public func responder(
        store: any KeyValueStore, directory: TenantDirectory, agentTimeout fallback: Duration
    ) throws(ConfigurationError)
        -> MessageResponder
    {
        let graph = try graph()
        let instagram = try instagramGraph()
        let agents = try agents()
        // One memory of Meta's throttles per execution, fed by every Graph call a turn makes
        // and shared with the other executions through the processed-messages table.
        let throttle = AccountThrottle(clock: clock)
        var responder = MessageResponder(
            agent: agents.fallback,
            sender: MessageSender(
                graph: graph, instagramGraph: instagram, throttle: throttle,
                gate: AccountGate(permits: try graphSendsPerAccount()), clock: clock),
            directory: directory, ledger: try ledger(store: store), agentTimeout: try agentTimeout(default: fallback),
            conversations: conversations(store: store),
            presence: Presence(graph: graph, instagramGraph: instagram, throttle: throttle, clock: clock),
            profiles: CustomerProfiles(graph: graph, instagramGraph: instagram, throttle: throttle), handoffPauseSeconds: try handoffPauseSeconds())
        responder.sharedThrottle = SharedThrottle(store: store, table: tables.processedMessages, throttle: throttle)
        responder.agents = agents
        responder.defaults = try settingsDefaults()
        responder.privateReplies = PrivateReplyBudget(store: store, table: tables.processedMessages, clock: clock)
        return responder
    }

    public func sendHandler() throws(ConfigurationError) -> SendHandler {
        let store = try store()
        let directory = directory(store: store)
        var handler = SendHandler(
            directory: directory,
            sender: MessageSender(graph: try graph(), instagramGraph: try instagramGraph(), clock: clock),
            ledger: try ledger(store: store), conversations: conversations(store: store), pauseSeconds: try handoffPauseSeconds())
        handler.telemetry = try telemetry(function: "send")
        return handler
    }

    public func receiveHandler() throws(ConfigurationError) -> ReceiveHandler {
        let store = try store()
        let directory = directory(store: store, cache: try tenancyCache())
        let ledger = try ledger(store: store)
        let responder = try responder(store: store, directory: directory, agentTimeout: .seconds(3))
        let dispatch: ReceiveHandler.Dispatch
        switch try environment.choice("RECEIVE_DISPATCH", of: ["inline", "sqs"], default: "inline") {
        case "sqs": dispatch = .queue(try queue())
        default: dispatch = .inline
        }
        var handler = ReceiveHandler(
            // Instagram-Login webhooks are signed with the Instagram app's secret.
            signature: WebhookSignature(appSecret: try appSecret(), otherSecrets: [environment["INSTAGRAM_APP_SECRET"]].compactMap { $0 }),
            directory: directory, ledger: ledger,
            responder: responder, dispatch: dispatch, inlineBudget: try inlineBudget(), clock: clock, conversations: conversations(store: store),
            appId: environment["META_APP_ID"])
        handler.telemetry = try telemetry(function: "receive")
        handler.maxConcurrentTurns = try turnConcurrency()
        return handler
    }

    /// The FIFO queue of `RECEIVE_DISPATCH=sqs`: `PROCESS_QUEUE_URL`, `SQS_ENDPOINT`, AWS signing.
    public func queue() throws(ConfigurationError) -> SQSQueue {
        try sqsQueue(url: try environment.required("PROCESS_QUEUE_URL"), variable: "PROCESS_QUEUE_URL", purpose: "RECEIVE_DISPATCH=sqs")
    }

    /// A queue by its URL (named by `variable`), with `SQS_ENDPOINT` and AWS signing.
    private func sqsQueue(url: String, variable: String, purpose: String) throws(ConfigurationError) -> SQSQueue {
        guard url.hasPrefix("https://") || url.hasPrefix("http://") else {
            throw ConfigurationError(variable: variable, problem: "must be the queue's URL")
        }
        let region = try environment.required("AWS_REGION")
        guard let credentials = AWSCredentials.fromEnvironment(environment.values) else {
            throw ConfigurationError(variable: "AWS_ACCESS_KEY_ID", problem: "and AWS_SECRET_ACCESS_KEY are required for \(purpose)")
        }
        return SQSQueue(
            transport: transport, queueURL: url, region: region, endpoint: environment["SQS_ENDPOINT"], credentials: credentials, clock: clock)
    }

    /// `refresh`: Instagram-Login tokens renewed before they expire. Needs only the tables and
    /// `INSTAGRAM_GRAPH_BASE_URL` (a refresh carries the token alone).
    public func refreshHandler() throws(ConfigurationError) -> RefreshHandler {
        let store = try store()
        let login = InstagramLogin(
            appId: environment["INSTAGRAM_APP_ID"] ?? "", appSecret: environment["INSTAGRAM_APP_SECRET"] ?? "",
            redirectURI: environment["INSTAGRAM_REDIRECT_URI"] ?? "", stateSecret: "",
            graphBaseURL: environment.value("INSTAGRAM_GRAPH_BASE_URL", default: "https://graph.instagram.com"),
            graphVersion: environment.value("META_GRAPH_API_VERSION", default: "v25.0"))
        var handler = RefreshHandler(
            directory: directory(store: store), ledger: try ledger(store: store), login: login, transport: transport, clock: clock)
        handler.telemetry = try telemetry(function: "refresh")
        return handler
    }

    public func processHandler() throws(ConfigurationError) -> ProcessHandler {
        let store = try store()
        let directory = directory(store: store, cache: try tenancyCache())
        let ledger = try ledger(store: store)
        let responder = try responder(store: store, directory: directory, agentTimeout: .seconds(25))
        // The queue of a record, to delay a throttled account's records: Lambda gives the
        // function AWS credentials; without them records come back at the visibility timeout.
        let transport = transport
        let endpoint = environment["SQS_ENDPOINT"]
        let clock = clock
        var queues: (@Sendable (String) -> SQSQueue?)? = nil
        if let credentials = AWSCredentials.fromEnvironment(environment.values) {
            queues = { (arn: String) -> SQSQueue? in
                guard let queue = SQSQueue.url(ofQueue: arn, endpoint: endpoint) else { return nil }
                return SQSQueue(
                    transport: transport, queueURL: queue.url, region: queue.region, endpoint: endpoint, credentials: credentials, clock: clock)
            }
        }
        var handler = ProcessHandler(
            directory: directory, ledger: ledger, responder: responder, telemetry: try telemetry(function: "process"), queues: queues,
            share: try tenantShare(store: store))
        handler.maxConcurrentTurns = try turnConcurrency()
        handler.deadLetters = try deadLetterQueue()
        return handler
    }

    /// `PROCESS_DEAD_LETTER_QUEUE_URL`: where `process` moves a record after its real tries
    /// (unset: the queue's own redrive policy decides, counting deferrals as tries).
    public func deadLetterQueue() throws(ConfigurationError) -> SQSQueue? {
        guard let url = environment["PROCESS_DEAD_LETTER_QUEUE_URL"], !url.isEmpty else { return nil }
        return try sqsQueue(url: url, variable: "PROCESS_DEAD_LETTER_QUEUE_URL", purpose: "PROCESS_DEAD_LETTER_QUEUE_URL")
    }

    /// `TENANCY_CACHE_SECONDS` (0 to 60): how long a warm receive or process keeps an
    /// account's route and a location's connection (docs/deploying.md "Fewer requests"). 5 in the Lambda
    /// loop; 0 (off) in local mode and `serve`, where a connect and a message share a process.
    public func tenancyCache() throws(ConfigurationError) -> TenancyCache? {
        let seconds = try environment.integer("TENANCY_CACHE_SECONDS", in: 0...60, default: environment.isLambda ? 5 : 0)
        return seconds > 0 ? TenancyCache(seconds: seconds, clock: clock) : nil
    }

    /// `RECEIVE_INLINE_BUDGET_MS` (1000 to 25000, default 4500): how long `receive` answers
    /// inline before it hands the rest back for redelivery (Meta waits about 5 s for a webhook's
    /// answer; raise it only behind something that waits longer).
    public func inlineBudget() throws(ConfigurationError) -> Duration {
        .milliseconds(try environment.integer("RECEIVE_INLINE_BUDGET_MS", in: 1000...25000, default: 4500))
    }

    /// `TURN_CONCURRENCY` (1 to 100, default 10): how many conversations' turns one invocation
    /// of receive (inline) or process answers at once.
    public func turnConcurrency() throws(ConfigurationError) -> Int {
        Int(try environment.integer("TURN_CONCURRENCY", in: 1...100, default: 10))
    }

    /// `GRAPH_SENDS_PER_ACCOUNT` (1 to 100, default 10): how many Send API calls one execution
    /// makes to one account at once; the others wait their turn.
    public func graphSendsPerAccount() throws(ConfigurationError) -> Int {
        Int(try environment.integer("GRAPH_SENDS_PER_ACCOUNT", in: 1...100, default: 10))
    }

    /// `TENANT_SHARE_PER_SECOND` (default 50; 0 turns it off): the messages of one business
    /// `process` starts answering per second, across every execution; the rest wait their slot.
    public func tenantShare(store: any KeyValueStore) throws(ConfigurationError) -> TenantShare? {
        let perSecond = try environment.integer("TENANT_SHARE_PER_SECOND", in: 0...100_000, default: 50)
        return perSecond == 0 ? nil : TenantShare(store: store, table: tables.processedMessages, perSecond: Int(perSecond), now: clock.epochSeconds)
    }
}

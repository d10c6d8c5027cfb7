import AWSSigning
import Essentials
import HTTPTransport
import MetaWebhooks

/// The agent a location's turn goes to: the one its settings name, or the deployment's.
/// Building one is cheap (a few values); nothing is kept between turns.
public struct Agents: Sendable {
    /// The deployment's agent (`AGENT_BACKEND`), for a location that chose none.
    public let fallback: any Agent
    let transport: any HTTPTransport
    /// `AGENT_HTTP_SECRET`, for a location's HTTP agent without a secret of its own.
    let deploymentSecret: [UInt8]?
    /// Where a location's HTTP agent may be (public addresses; loopback too in local mode).
    let peers: PeerRule
    let echoTemplate: String
    /// For `lambda` and `bedrock-agent` agents: the region and the function's credentials.
    let region: String?
    let credentials: AWSCredentials?
    let lambdaEndpoint: String?
    let bedrockEndpoint: String?
    /// The functions a location may name (`AGENT_LAMBDA_FUNCTIONS`): checked again per turn,
    /// so narrowing the list takes effect without touching the settings.
    let lambdaFunctions: [String]
    let clock: WallClock

    public init(
        fallback: any Agent, transport: any HTTPTransport, deploymentSecret: [UInt8]? = nil, peers: PeerRule = .publicOnly,
        echoTemplate: String = "Echo: {text}", region: String? = nil, credentials: AWSCredentials? = nil, lambdaEndpoint: String? = nil,
        bedrockEndpoint: String? = nil, lambdaFunctions: [String] = [], clock: WallClock = .system
    ) {
        self.clock = clock
        self.fallback = fallback
        self.transport = transport
        self.deploymentSecret = deploymentSecret
        self.peers = peers
        self.echoTemplate = echoTemplate
        self.region = region
        self.credentials = credentials
        self.lambdaEndpoint = lambdaEndpoint
        self.bedrockEndpoint = bedrockEndpoint
        self.lambdaFunctions = lambdaFunctions
    }

    /// The agent for `choice` (nil: the deployment's). A choice this deployment cannot serve
    /// (no AWS credentials, a function no longer allowed) is an agent that refuses, so the
    /// turn fails with a reason instead of going to another agent than the location chose.
    public func agent(for choice: AgentChoice?) -> any Agent {
        switch choice {
        case nil: return fallback
        case .echo(let template)?: return EchoAgent(template: template ?? echoTemplate)
        case .http(let url, let secret)?:
            return HTTPAgent(url: url, transport: transport, secret: secret ?? deploymentSecret, clock: clock, peers: peers)
        case .lambda(let function)?:
            guard lambdaFunctions.contains(function) else {
                return RefusingAgent(reason: "the location's Lambda agent is not among the functions this deployment allows")
            }
            guard let region, let credentials else { return RefusingAgent(reason: "a Lambda agent needs AWS_REGION and AWS credentials") }
            return LambdaAgent(
                function: function, region: region, endpoint: lambdaEndpoint, credentials: credentials, transport: transport, clock: clock)
        case .bedrock(let agentId, let aliasId)?:
            guard let region, let credentials else { return RefusingAgent(reason: "a Bedrock agent needs AWS_REGION and AWS credentials") }
            return BedrockAgent(
                agentId: agentId, agentAliasId: aliasId, region: region, endpoint: bedrockEndpoint, credentials: credentials, transport: transport,
                clock: clock)
        }
    }
}

/// An agent that cannot be called: every turn fails with `reason` (recorded, not retried).
struct RefusingAgent: Agent {
    let reason: String

    func reply(to request: AgentRequest, timeout: Duration) async throws(AgentError) -> AgentReply {
        throw AgentError(.refused, reason)
    }
}

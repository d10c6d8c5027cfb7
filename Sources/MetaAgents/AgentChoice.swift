/// Who composes a location's replies: what its settings name (see `Agents.agent(for:)`).
public enum AgentChoice: Sendable, Equatable {
    /// A fixed reply (`{text}` is the customer's); nil: the deployment's template.
    case echo(template: String?)
    /// An HTTP agent of the business's: https only, never an address of ours. Its requests
    /// are signed with the location's own secret, or the deployment's.
    case http(url: String, secret: [UInt8]?)
    /// A Lambda function in the deployment's account, one `AGENT_LAMBDA_FUNCTIONS` allows.
    case lambda(function: String)
    /// An Amazon Bedrock agent and alias.
    case bedrock(agentId: String, aliasId: String)

    public var backend: String {
        switch self {
        case .echo: "echo"
        case .http: "http"
        case .lambda: "lambda"
        case .bedrock: "bedrock-agent"
        }
    }
}

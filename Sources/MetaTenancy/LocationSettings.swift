import Essentials
import KeyValueStore
import MetaAgents
import MetaWebhooks

/// What one business location chose for itself: its agent and its rules. Kept on the
/// location's connection item (`settings`), so the read that finds the connection finds them
/// too: no request of its own per message. A setting left out is the deployment's default (an
/// environment variable); `GET /external/meta/connections/{businessId}/{locationId}/settings`
/// shows both.
public struct LocationSettings: Sendable, Equatable {
    /// Who composes the location's replies (the agents' own type).
    public typealias AgentChoice = MetaAgents.AgentChoice

    /// Whether the agent answers comments, and how (issue 34): `off` until a business opts in.
    public enum CommentReplies: String, Sendable, Equatable, CaseIterable {
        case off
        case `private`
        case privateAndPublic = "private_and_public"
    }

    public var agent: AgentChoice?
    /// How long a person's message or the agent's handoff pauses the agent, 1 minute to 7 days.
    public var handoffPauseMinutes: Int64?
    public var commentReplies: CommentReplies?
    /// "Seen" and "typing" while the agent works.
    public var senderActions: Bool?
    /// A pause that ends with the customer's messages unanswered is offered to the agent once.
    public var answerAfterPause: Bool?
    /// Whether what the customer wrote during a pause is kept (its text) for the next turn's
    /// agent; without it only the messages' ids and times are kept.
    public var keepTextDuringPause: Bool?

    public init(
        agent: AgentChoice? = nil, handoffPauseMinutes: Int64? = nil, commentReplies: CommentReplies? = nil, senderActions: Bool? = nil,
        answerAfterPause: Bool? = nil, keepTextDuringPause: Bool? = nil
    ) {
        self.agent = agent
        self.handoffPauseMinutes = handoffPauseMinutes
        self.commentReplies = commentReplies
        self.senderActions = senderActions
        self.answerAfterPause = answerAfterPause
        self.keepTextDuringPause = keepTextDuringPause
    }

    public static let maxPauseMinutes: Int64 = Conversations.maxPauseSeconds / 60
    package static let names = ["agent", "handoffPauseMinutes", "commentReplies", "senderActions", "answerAfterPause", "keepTextDuringPause"]

    /// How long a person's message or the agent's handoff pauses the agent here, in seconds:
    /// the location's choice, or `fallback` (the deployment's).
    public func pauseSeconds(or fallback: Int64) -> Int64 {
        handoffPauseMinutes.map { $0 * 60 } ?? fallback
    }

    /// The names of the settings the location set itself.
    public var chosen: [String] {
        var names: [String] = []
        if agent != nil { names.append("agent") }
        if handoffPauseMinutes != nil { names.append("handoffPauseMinutes") }
        if commentReplies != nil { names.append("commentReplies") }
        if senderActions != nil { names.append("senderActions") }
        if answerAfterPause != nil { names.append("answerAfterPause") }
        if keepTextDuringPause != nil { names.append("keepTextDuringPause") }
        return names
    }
}

// MARK: Stored

extension LocationSettings {
    /// The `settings` attribute of a connection item.
    var attribute: AttributeValue {
        var map: [String: AttributeValue] = [:]
        if let agent {
            var choice: [String: AttributeValue] = ["backend": .s(agent.backend)]
            switch agent {
            case .echo(let template): choice["template"] = template.map { .s($0) }
            case .http(let url, let secret):
                choice["url"] = .s(url)
                choice["secret"] = secret.map { .s(String(decoding: $0, as: UTF8.self)) }
            case .lambda(let function): choice["function"] = .s(function)
            case .bedrock(let agentId, let aliasId):
                choice["agentId"] = .s(agentId)
                choice["aliasId"] = .s(aliasId)
            }
            map["agent"] = .m(choice)
        }
        if let handoffPauseMinutes { map["handoffPauseMinutes"] = .number(handoffPauseMinutes) }
        if let commentReplies { map["commentReplies"] = .s(commentReplies.rawValue) }
        if let senderActions { map["senderActions"] = .bool(senderActions) }
        if let answerAfterPause { map["answerAfterPause"] = .bool(answerAfterPause) }
        if let keepTextDuringPause { map["keepTextDuringPause"] = .bool(keepTextDuringPause) }
        return .m(map)
    }

    /// From a connection item's `settings`; a value that does not read (written by hand) is
    /// left to the default, never an error on the message path.
    init(attribute: AttributeValue?) {
        self.init()
        guard let map = attribute?.map else { return }
        if let choice = map["agent"]?.map {
            switch choice["backend"]?.string {
            case "echo": agent = .echo(template: choice["template"]?.string)
            case "http": agent = choice["url"]?.string.map { .http(url: $0, secret: choice["secret"]?.string.map { Array($0.utf8) }) }
            case "lambda": agent = choice["function"]?.string.map { .lambda(function: $0) }
            case "bedrock-agent":
                if let agentId = choice["agentId"]?.string, let aliasId = choice["aliasId"]?.string { agent = .bedrock(agentId: agentId, aliasId: aliasId) }
            default: break
            }
        }
        handoffPauseMinutes = map["handoffPauseMinutes"]?.int.flatMap { (1...Self.maxPauseMinutes).contains($0) ? $0 : nil }
        commentReplies = map["commentReplies"]?.string.flatMap(CommentReplies.init(rawValue:))
        senderActions = map["senderActions"]?.bool
        answerAfterPause = map["answerAfterPause"]?.bool
        keepTextDuringPause = map["keepTextDuringPause"]?.bool
    }
}

// MARK: Read from a request

/// A setting refused: which one, and why (never its value: a secret may be one).
public struct SettingsError: Error, Sendable, Equatable, CustomStringConvertible {
    public let field: String
    public let problem: String

    public init(field: String, problem: String) {
        self.field = field
        self.problem = problem
    }

    public var description: String { "\(field) \(problem)" }
}

/// What deciding on a location's settings needs to know of the deployment.
public struct SettingsRules: Sendable {
    /// Local mode: an agent URL may be `http://` on loopback (a development agent).
    public var allowsLoopback: Bool
    /// Whether the deployment has a signing secret of its own (`AGENT_HTTP_SECRET`).
    public var hasDeploymentSecret: Bool
    /// Whether an HTTP agent must sign its requests (Lambda: a URL anyone may learn).
    public var requiresSignedAgents: Bool
    /// The functions `AGENT_LAMBDA_FUNCTIONS` lets a location name.
    public var lambdaFunctions: [String]
    /// Names to addresses (the system's resolver; a test's own).
    public var resolve: @Sendable (String) -> [IPAddress]

    public init(
        allowsLoopback: Bool, hasDeploymentSecret: Bool, requiresSignedAgents: Bool, lambdaFunctions: [String],
        resolve: @escaping @Sendable (String) -> [IPAddress] = IPAddress.resolve
    ) {
        self.allowsLoopback = allowsLoopback
        self.hasDeploymentSecret = hasDeploymentSecret
        self.requiresSignedAgents = requiresSignedAgents
        self.lambdaFunctions = lambdaFunctions
        self.resolve = resolve
    }

    public var peers: PeerRule { allowsLoopback ? .publicOrLoopback : .publicOnly }
}

extension LocationSettings {
    /// Reads a `PUT`'s body: every name known, every value checked. `null` or an absent name:
    /// the deployment's default. `current` keeps an HTTP agent's secret when the same agent is
    /// sent again without it (a secret is never read back).
    public static func parse(_ document: JSON, rules: SettingsRules, current: LocationSettings? = nil) throws(SettingsError) -> LocationSettings {
        guard let members = document.object else { throw SettingsError(field: "settings", problem: "must be a JSON object") }
        for name in members.keys where !names.contains(name) {
            throw SettingsError(field: String(name.prefix(64)), problem: "is not a setting (known: \(names.joined(separator: ", ")))")
        }
        var settings = LocationSettings()
        settings.agent = try parseAgent(members["agent"], rules: rules, current: current?.agent)
        switch members["handoffPauseMinutes"] {
        case nil, .null?: break
        case let value?:
            guard let minutes = value.exactInt64, (1...maxPauseMinutes).contains(minutes) else {
                throw SettingsError(field: "handoffPauseMinutes", problem: "must be a whole number of minutes from 1 to \(maxPauseMinutes)")
            }
            settings.handoffPauseMinutes = minutes
        }
        switch members["commentReplies"] {
        case nil, .null?: break
        case let value?:
            guard let choice = value.string.flatMap(CommentReplies.init(rawValue:)) else {
                throw SettingsError(field: "commentReplies", problem: "must be one of off, private, private_and_public")
            }
            settings.commentReplies = choice
        }
        settings.senderActions = try flag(members, "senderActions")
        settings.answerAfterPause = try flag(members, "answerAfterPause")
        settings.keepTextDuringPause = try flag(members, "keepTextDuringPause")
        return settings
    }

    private static func flag(_ members: [String: JSON], _ name: String) throws(SettingsError) -> Bool? {
        switch members[name] {
        case nil, .null?: return nil
        case .bool(let value)?: return value
        default: throw SettingsError(field: name, problem: "must be true or false")
        }
    }

    static let agentFields: [String: [String]] = [
        "echo": ["backend", "template"], "http": ["backend", "url", "secret"], "lambda": ["backend", "function"],
        "bedrock-agent": ["backend", "agentId", "aliasId"],
    ]

    private static func parseAgent(_ value: JSON?, rules: SettingsRules, current: AgentChoice?) throws(SettingsError) -> AgentChoice? {
        guard let value, value != .null else { return nil }
        guard let members = value.object, let backend = members["backend"]?.string, let allowed = agentFields[backend] else {
            throw SettingsError(field: "agent", problem: "must be an object whose backend is echo, http, lambda or bedrock-agent")
        }
        for name in members.keys where !allowed.contains(name) {
            throw SettingsError(
                field: "agent.\(name.prefix(64))", problem: "is not a field of the \(backend) agent (known: \(allowed.joined(separator: ", ")))")
        }
        func text(_ name: String, required: Bool = true) throws(SettingsError) -> String? {
            switch members[name] {
            case nil, .null?:
                if required { throw SettingsError(field: "agent.\(name)", problem: "is required for the \(backend) agent") }
                return nil
            case .string(let text)?: return text
            default: throw SettingsError(field: "agent.\(name)", problem: "must be a string")
            }
        }
        switch backend {
        case "echo":
            let template = try text("template", required: false)
            if let template, template.isEmpty || template.utf8.count > 1000 {
                throw SettingsError(field: "agent.template", problem: "must be 1 to 1000 bytes")
            }
            return .echo(template: template)
        case "http":
            let url = try text("url") ?? ""
            try AgentURLRule.check(url, rules: rules)
            var secret = try text("secret", required: false).map { Array($0.utf8) }
            if let given = secret, !(32...512).contains(given.count) {
                throw SettingsError(field: "agent.secret", problem: "must be 32 to 512 characters (openssl rand -hex 32)")
            }
            // The same agent sent again without its secret keeps the one it has.
            if secret == nil, case .http(let currentURL, let kept)? = current, currentURL == url { secret = kept }
            secret = secret.flatMap { $0.isEmpty ? nil : $0 }
            if secret == nil, rules.requiresSignedAgents, !rules.hasDeploymentSecret {
                throw SettingsError(field: "agent.secret", problem: "is required: this deployment has no AGENT_HTTP_SECRET to sign the agent's requests with")
            }
            return .http(url: url, secret: secret)
        case "lambda":
            let function = try text("function") ?? ""
            guard rules.lambdaFunctions.contains(function) else {
                throw SettingsError(
                    field: "agent.function",
                    problem: rules.lambdaFunctions.isEmpty
                        ? "cannot be used: this deployment allows no Lambda agent (AGENT_LAMBDA_FUNCTIONS, the AgentFunctionArns parameter)"
                        : "must be one of the functions this deployment allows (AGENT_LAMBDA_FUNCTIONS)")
            }
            return .lambda(function: function)
        default:
            let agentId = try text("agentId") ?? ""
            let aliasId = try text("aliasId") ?? ""
            guard agentId.utf8.count == 10, agentId.unicodeScalars.allSatisfy({ $0.isASCII && $0.properties.isAlphabetic || ("0"..."9").contains($0) })
            else { throw SettingsError(field: "agent.agentId", problem: "must be a Bedrock agent id: 10 letters and digits") }
            guard (1...10).contains(aliasId.utf8.count),
                aliasId.unicodeScalars.allSatisfy({ $0.isASCII && $0.properties.isAlphabetic || ("0"..."9").contains($0) })
            else { throw SettingsError(field: "agent.aliasId", problem: "must be a Bedrock agent alias id: 1 to 10 letters and digits") }
            return .bedrock(agentId: agentId, aliasId: aliasId)
        }
    }
}

/// The rule for an agent URL a location sets: https, a name (or address) that reaches only
/// public addresses; in local mode also `http://` or `https://` on loopback. Checked when the
/// setting is written (the name resolved then), and again on every call against the address
/// actually connected to (`OutboundRequest.peers`), so a name that later resolves inward is
/// refused too.
public enum AgentURLRule {
    public static func check(_ url: String, rules: SettingsRules) throws(SettingsError) {
        let field = "agent.url"
        guard url.utf8.count <= 2048, url.unicodeScalars.allSatisfy({ $0.isASCII && $0.value > 0x20 && $0.value < 0x7F }) else {
            throw SettingsError(field: field, problem: "must be an https URL of at most 2048 printable ASCII characters")
        }
        let secure = url.hasPrefix("https://")
        guard secure || url.hasPrefix("http://") else { throw SettingsError(field: field, problem: "must be an https URL") }
        let rest = url.dropFirst(secure ? 8 : 7)
        let authority = rest.prefix { $0 != "/" && $0 != "?" && $0 != "#" }
        guard !authority.contains("@") else { throw SettingsError(field: field, problem: "must not carry a user name or password") }
        var host = String(authority)
        if host.hasPrefix("[") {
            guard let close = host.firstIndex(of: "]") else { throw SettingsError(field: field, problem: "has a malformed host") }
            let tail = host[host.index(after: close)...]
            guard tail.isEmpty || (tail.hasPrefix(":") && Int(tail.dropFirst()).map({ (1...65535).contains($0) }) == true) else {
                throw SettingsError(field: field, problem: "has a malformed port")
            }
            host = String(host[host.index(after: host.startIndex)..<close])
        } else if let colon = host.firstIndex(of: ":") {
            guard Int(host[host.index(after: colon)...]).map({ (1...65535).contains($0) }) == true else {
                throw SettingsError(field: field, problem: "has a malformed port")
            }
            host = String(host[..<colon])
        }
        host = host.lowercased()
        guard !host.isEmpty else { throw SettingsError(field: field, problem: "has no host") }
        let addresses = IPAddress(host).map { [$0] } ?? rules.resolve(host)
        guard !addresses.isEmpty else { throw SettingsError(field: field, problem: "names a host that does not resolve") }
        for address in addresses where !rules.peers.allows(address) {
            throw SettingsError(
                field: field, problem: "reaches a \(address.scope.rawValue) address: an agent must be on the public internet")
        }
        // Plain http only to this machine, in local mode (a development agent).
        if !secure, !addresses.allSatisfy({ $0.scope == .loopback }) {
            throw SettingsError(field: field, problem: "must be an https URL (http only to this machine, in local mode)")
        }
    }
}

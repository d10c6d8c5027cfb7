import FunctionRuntime
import Logging
import MetaAgents
import MetaTenancy
import MetaWebhooks

/// What stands for a setting a location left out: the deployment's environment.
public struct SettingsDefaults: Sendable, Equatable {
    /// `AGENT_BACKEND`.
    public var agentBackend = "echo"
    /// `HANDOFF_PAUSE_MINUTES`.
    public var handoffPauseMinutes: Int64 = 60
    /// `COMMENT_REPLIES`.
    public var commentReplies = LocationSettings.CommentReplies.off
    /// `SENDER_ACTIONS`.
    public var senderActions = true
    /// `ANSWER_AFTER_PAUSE`.
    public var answerAfterPause = false
    /// `PAUSE_KEEPS_TEXT`.
    public var keepTextDuringPause = false

    public init() {}

    /// The settings in force where `settings` leaves some out.
    public func resolve(_ settings: LocationSettings) -> ResolvedSettings {
        ResolvedSettings(
            handoffPauseMinutes: settings.handoffPauseMinutes ?? handoffPauseMinutes, commentReplies: settings.commentReplies ?? commentReplies,
            senderActions: settings.senderActions ?? senderActions, answerAfterPause: settings.answerAfterPause ?? answerAfterPause,
            keepTextDuringPause: settings.keepTextDuringPause ?? keepTextDuringPause)
    }
}

/// A location's rules in force (its agent aside).
public struct ResolvedSettings: Sendable, Equatable, Encodable {
    public var handoffPauseMinutes: Int64
    public var commentReplies: LocationSettings.CommentReplies
    public var senderActions: Bool
    public var answerAfterPause: Bool
    public var keepTextDuringPause: Bool
}

extension LocationSettings.CommentReplies: Encodable {}

/// A location's settings as shown: what it set (an HTTP agent's secret only as `secretSet`),
/// what is in force, and which of those are the deployment's.
struct SettingsView: Encodable {
    struct AgentView: Encodable, Equatable {
        let backend: String
        var url: String? = nil
        var secretSet: Bool? = nil
        var function: String? = nil
        var agentId: String? = nil
        var aliasId: String? = nil
        var template: String? = nil
        /// `location` or `deployment`.
        var from: String? = nil

        init(_ choice: LocationSettings.AgentChoice) {
            backend = choice.backend
            switch choice {
            case .echo(let template): self.template = template
            case .http(let url, let secret):
                self.url = url
                secretSet = secret != nil
            case .lambda(let function): self.function = function
            case .bedrock(let agentId, let aliasId):
                self.agentId = agentId
                self.aliasId = aliasId
            }
        }

        init(deployment backend: String) {
            self.backend = backend
            from = "deployment"
        }
    }

    struct Chosen: Encodable {
        var agent: AgentView?
        var handoffPauseMinutes: Int64?
        var commentReplies: LocationSettings.CommentReplies?
        var senderActions: Bool?
        var answerAfterPause: Bool?
        var keepTextDuringPause: Bool?
    }

    struct InForce: Encodable {
        let agent: AgentView
        let handoffPauseMinutes: Int64
        let commentReplies: LocationSettings.CommentReplies
        let senderActions: Bool
        let answerAfterPause: Bool
        let keepTextDuringPause: Bool
    }

    let chosen: Chosen
    let inForce: InForce
    /// The settings the location left to the deployment.
    let fromDeployment: [String]

    init(_ settings: LocationSettings, defaults: SettingsDefaults) {
        chosen = Chosen(
            agent: settings.agent.map(AgentView.init), handoffPauseMinutes: settings.handoffPauseMinutes, commentReplies: settings.commentReplies,
            senderActions: settings.senderActions, answerAfterPause: settings.answerAfterPause, keepTextDuringPause: settings.keepTextDuringPause)
        let resolved = defaults.resolve(settings)
        var agent = settings.agent.map(AgentView.init) ?? AgentView(deployment: defaults.agentBackend)
        if agent.from == nil { agent.from = "location" }
        inForce = InForce(
            agent: agent, handoffPauseMinutes: resolved.handoffPauseMinutes, commentReplies: resolved.commentReplies,
            senderActions: resolved.senderActions, answerAfterPause: resolved.answerAfterPause, keepTextDuringPause: resolved.keepTextDuringPause)
        let chosenNames = settings.chosen
        fromDeployment = LocationSettings.names.filter { !chosenNames.contains($0) }
    }
}

extension ConnectionsHandler {
    struct SettingsAnswer: Encodable {
        let businessId: String
        let locationId: String
        let settings: SettingsView
    }

    /// The largest settings document taken.
    static let maxSettingsBytes = 16 * 1024

    /// `GET .../{businessId}/{locationId}/settings`.
    func settings(of tenant: Tenant) async throws(RequestRefused) -> HTTPResponse {
        let settings = try await storedSettings(of: tenant)
        return .json(
            200, SettingsAnswer(businessId: tenant.businessId, locationId: tenant.locationId, settings: SettingsView(settings, defaults: settingsDefaults)))
    }

    /// `PUT .../{businessId}/{locationId}/settings`: the whole document; what it leaves out
    /// (or sets to null) is the deployment's default.
    func setSettings(_ request: HTTPRequest, of tenant: Tenant, logger: Logger) async throws(RequestRefused) -> HTTPResponse {
        guard request.body.count <= Self.maxSettingsBytes else {
            throw RequestRefused(413, code: .bodyTooLarge, "the settings document must be at most \(Self.maxSettingsBytes) bytes")
        }
        let document: JSON
        do {
            document = try JSON.parse(request.body)
        } catch {
            throw RequestRefused(400, code: .invalidJson, "the body is not valid JSON: \(error)")
        }
        let current = try await storedSettings(of: tenant)
        let settings: LocationSettings
        do {
            settings = try LocationSettings.parse(document, rules: settingsRules, current: current)
        } catch {
            throw RequestRefused(400, code: .invalidSetting, error.description)
        }
        let written: Bool
        do {
            written = try await directory.setSettings(settings, of: tenant)
        } catch {
            throw RequestRefused(503, code: .storeUnavailable, "the settings could not be written: \(error.code.rawValue)")
        }
        guard written else { throw Self.notConnected(tenant) }
        logger.info(
            "a location's settings were changed",
            metadata: [
                "businessId": "\(tenant.businessId)", "locationId": "\(tenant.locationId)", "chosen": "\(settings.chosen.joined(separator: ","))",
            ])
        return .json(
            200, SettingsAnswer(businessId: tenant.businessId, locationId: tenant.locationId, settings: SettingsView(settings, defaults: settingsDefaults)))
    }

    /// The location's settings as stored: 404 without a connection, 503 without the store.
    func storedSettings(of tenant: Tenant) async throws(RequestRefused) -> LocationSettings {
        let settings: LocationSettings?
        do {
            settings = try await directory.settings(of: tenant)
        } catch {
            throw RequestRefused(503, code: .storeUnavailable, "the settings could not be read: \(error.code.rawValue)")
        }
        guard let settings else { throw Self.notConnected(tenant) }
        return settings
    }

    static func notConnected(_ tenant: Tenant) -> RequestRefused {
        RequestRefused(
            404, code: .notConnected,
            "business \(tenant.businessId) has no connection at location \(tenant.locationId): settings belong to a connected location")
    }
}

import Essentials
import Logging
import MetaWebhooks

/// Shows the customer that the business is reading while the agent composes the reply:
/// Messenger and Instagram `sender_action` `mark_seen` then `typing_on` on
/// `POST /{page-id}/messages` (Messenger Platform and Instagram Messaging "Sender Actions");
/// WhatsApp's read receipt with the typing indicator, `{"status": "read", "message_id",
/// "typing_indicator": {"type": "text"}}` on `POST /{phone-number-id}/messages` (Cloud API
/// "Typing indicators"). Best effort: both calls together get `budget`, and a failure is
/// logged, never thrown.
public struct Presence: Sendable {
    public let graph: GraphClient
    /// `graph.instagram.com`, for Instagram-Login connections.
    public let instagramGraph: GraphClient?
    public let budget: Duration
    /// Where a throttling answer is remembered for the account (nil: nowhere).
    public let throttle: AccountThrottle?
    public let clock: WallClock

    public init(
        graph: GraphClient, instagramGraph: GraphClient? = nil, budget: Duration = .milliseconds(400), throttle: AccountThrottle? = nil,
        clock: WallClock = .system
    ) {
        self.clock = clock
        self.graph = graph
        self.instagramGraph = instagramGraph
        self.budget = budget
        self.throttle = throttle
    }

    /// Marks `message` seen and shows typing to its sender. True when Meta took every call.
    @discardableResult
    public func showReading(_ message: InboundMessage, credentials: some GraphConnection, logger: Logger) async -> Bool {
        guard let account = credentials.sendingAccount(for: message.platform), let token = credentials.token(for: message.platform),
            let graph = GraphClient.speaking(for: credentials, on: message.platform, facebook: graph, instagram: instagramGraph)
        else {
            return false
        }
        let end = clock.instant() + budget
        let bodies: [JSON]
        switch message.platform {
        case .whatsapp:
            bodies = [
                [
                    "messaging_product": "whatsapp", "status": "read", "message_id": .string(message.messageId),
                    "typing_indicator": ["type": "text"],
                ]
            ]
        case .instagram, .messenger:
            bodies = ["mark_seen", "typing_on"].map { action in
                ["recipient": ["id": .string(message.senderId)], "sender_action": .string(action)]
            }
        }
        for body in bodies {
            let remaining = clock.remaining(until: end)
            guard remaining > .milliseconds(20), !Task.isCancelled else { return false }
            do {
                _ = try await graph.call("POST", "\(account)/messages", token: token, json: body.encoded(), timeout: remaining)
            } catch {
                if error.isThrottled { throttle?.pause(account, seconds: error.secondsToRegainAccess) }
                logger.info("a sender action was not shown (the reply goes on)", metadata: ["error": "\(error)"])
                return false
            }
        }
        return true
    }

    /// Takes the typing indicator away when no reply follows (Messenger and Instagram; WhatsApp's
    /// goes by itself).
    public func stopTyping(_ message: InboundMessage, credentials: some GraphConnection, logger: Logger) async {
        guard message.platform != .whatsapp, let account = credentials.sendingAccount(for: message.platform),
            let token = credentials.token(for: message.platform),
            let graph = GraphClient.speaking(for: credentials, on: message.platform, facebook: graph, instagram: instagramGraph)
        else { return }
        let body: JSON = ["recipient": ["id": .string(message.senderId)], "sender_action": "typing_off"]
        do {
            _ = try await graph.call("POST", "\(account)/messages", token: token, json: body.encoded(), timeout: budget)
        } catch {
            logger.info("typing_off was not shown", metadata: ["error": "\(error)"])
        }
    }
}

/// The customer's name from Meta's user profile, with the Page token: Messenger
/// `GET /{psid}?fields=first_name,last_name` (Messenger Platform "User Profile API"),
/// Instagram `GET /{igsid}?fields=name,username` (Instagram Messaging "User Profile API";
/// Meta answers only once the customer has written). WhatsApp's name comes with the webhook.
public struct CustomerProfiles: Sendable {
    public let graph: GraphClient
    /// `graph.instagram.com`, for Instagram-Login connections.
    public let instagramGraph: GraphClient?
    public let timeout: Duration
    /// Where a throttling answer is remembered for the account (nil: nowhere).
    public let throttle: AccountThrottle?

    public init(graph: GraphClient, instagramGraph: GraphClient? = nil, timeout: Duration = .milliseconds(300), throttle: AccountThrottle? = nil) {
        self.graph = graph
        self.instagramGraph = instagramGraph
        self.timeout = timeout
        self.throttle = throttle
    }

    public enum Lookup: Sendable, Equatable {
        /// Meta answered: the name, or nil when the profile has none.
        case found(String?)
        /// No answer worth keeping (an error, a timeout): asked again next time.
        case unknown
    }

    public func name(of customer: String, platform: Platform, credentials: some GraphConnection, logger: Logger) async -> Lookup {
        guard platform != .whatsapp, let token = credentials.token(for: platform),
            let graph = GraphClient.speaking(for: credentials, on: platform, facebook: graph, instagram: instagramGraph)
        else { return .unknown }
        let fields = platform == .messenger ? "first_name,last_name" : "name,username"
        let profile: JSON
        do {
            profile = try await graph.call("GET", customer, query: [("fields", fields)], token: token, timeout: timeout)
        } catch {
            if error.isThrottled, let account = credentials.sendingAccount(for: platform) {
                // The agent is not asked while Meta throttles the account (the responder checks).
                throttle?.pause(account, seconds: error.secondsToRegainAccess)
            }
            logger.info("the customer's profile could not be read", metadata: ["error": "\(error)"])
            return error.kind == .graph && error.httpStatus.map { $0 < 500 } == true ? .found(nil) : .unknown
        }
        let parts =
            platform == .messenger
            ? [profile["first_name"]?.string, profile["last_name"]?.string]
            : [profile["name"]?.string ?? profile["username"]?.string]
        let name = parts.compactMap { $0?.trimmingSpaces() }.filter { !$0.isEmpty }.joined(separator: " ")
        return .found(name.isEmpty ? nil : String(name.prefix(200)))
    }
}

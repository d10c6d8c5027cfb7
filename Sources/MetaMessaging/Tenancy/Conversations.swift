import Essentials
import KeyValueStore

/// When each customer last wrote (`meta-conversations`): Meta lets a business answer freely
/// for 24 hours after a customer's last message (the customer service window), and a person
/// tagged `HUMAN_AGENT` for 7 days on Messenger and Instagram; outside it, WhatsApp takes only
/// templates. One item per conversation, keyed by platform, the account that sends for the
/// business (the Page for Instagram and Messenger, the phone number for WhatsApp) and the
/// customer, expiring (TTL) once no window is left.
public struct Conversations: Sendable {
    public let store: any KeyValueStore
    public let table: TableSchema
    public let clock: WallClock

    public static let windowSeconds: Int64 = 24 * 3600
    public static let humanAgentWindowSeconds: Int64 = 7 * 24 * 3600

    public init(store: any KeyValueStore, table: TableSchema, clock: WallClock = .system) {
        self.store = store
        self.table = table
        self.clock = clock
    }

    static func key(platform: Platform, account: String, customer: String) -> Item {
        ["conversationId": .s("\(platform.rawValue)#\(account)#\(customer)")]
    }

    /// Records that the customer wrote, at our clock's time of receipt (a few seconds after
    /// Meta's, so the window we keep may close that much later than Meta's; Meta's refusal is
    /// then reported as it comes). Never moves the time back.
    public func customerWrote(platform: Platform, account: String, customer: String, businessId: String) async throws(KeyValueError) {
        let now = clock.epochSeconds()
        var item = Self.key(platform: platform, account: account, customer: customer)
        item["businessId"] = .s(businessId)
        item["lastCustomerMessageAt"] = .number(now)
        item["expiresAt"] = .number(now + Self.humanAgentWindowSeconds + 3600)
        do {
            try await store.put(table, item: item, condition: .or(.itemAbsent, .lessThan("lastCustomerMessageAt", .number(now))))
        } catch  where error.code == .conditionFailed {
            return
        }
    }

    /// When the customer last wrote (epoch seconds), if we know.
    public func lastCustomerMessage(platform: Platform, account: String, customer: String) async throws(KeyValueError) -> Int64? {
        try await store.get(table, key: Self.key(platform: platform, account: account, customer: customer))?["lastCustomerMessageAt"]?.int
    }

    /// How a free-form message may go now, or why it may not.
    public enum Permission: Sendable, Equatable {
        /// Inside the 24-hour window: `messaging_type` RESPONSE.
        case response
        /// Past 24 hours but within 7 days, written by a person: `MESSAGE_TAG` `HUMAN_AGENT`.
        case humanAgent
        /// Outside the window; `closedAt` is when it closed (nil: the customer never wrote).
        case outside(closedAt: Int64?)
    }

    /// The customer service window rules (Messenger Platform "Sending messages outside the
    /// 24-hour window", WhatsApp "customer service windows").
    public static func permission(lastCustomerMessage last: Int64?, now: Int64, platform: Platform, humanAgent: Bool) -> Permission {
        guard let last else { return .outside(closedAt: nil) }
        let elapsed = now.subtractingReportingOverflow(last)
        guard !elapsed.overflow else { return .outside(closedAt: last) }
        if elapsed.partialValue < windowSeconds { return .response }
        if humanAgent, platform != .whatsapp, elapsed.partialValue < humanAgentWindowSeconds { return .humanAgent }
        let window = humanAgent && platform != .whatsapp ? humanAgentWindowSeconds : windowSeconds
        return .outside(closedAt: last.addingReportingOverflow(window).overflow ? nil : last + window)
    }
}

import Essentials
import KeyValueStore
import MetaWebhooks

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

    /// What Meta said of the customer's name, kept with the time they wrote.
    public struct ProfileNote: Sendable, Equatable {
        /// The name (nil: Meta gave none).
        public var name: String?
        /// Whether Meta's user profile was asked now (`profileCheckedAt`), or the name came
        /// with the message (WhatsApp's profile name).
        public var looked: Bool

        public init(name: String?, looked: Bool) {
            self.name = name
            self.looked = looked
        }
    }

    /// A reply of ours that may be on its way to the customer: the turn answering
    /// `messageId` (its last inbound message), until `until` (epoch seconds, the turn's
    /// deadline). An echo we cannot place yet in this conversation waits for that turn to
    /// settle before it is taken for a person's.
    public struct InFlight: Sendable, Equatable {
        public var messageId: String
        public var until: Int64

        public init(messageId: String, until: Int64) {
            self.messageId = messageId
            self.until = until
        }
    }

    /// Records that the customer wrote, at `at` (our clock's time of receipt, a few seconds
    /// after Meta's, so the window we keep may close that much later than Meta's; Meta's
    /// refusal is then reported as it comes; nil: now), and with it, in the same write, what
    /// Meta said of their name and the reply about to be composed. One write per turn. Never
    /// moves the time back (the rest is still kept then), and leaves the rest of the
    /// conversation (a pause) as it is.
    public func customerWrote(
        platform: Platform, account: String, customer: String, businessId: String, at: Int64? = nil, profile: ProfileNote? = nil,
        inFlight: InFlight? = nil
    ) async throws(KeyValueError) {
        let now = clock.epochSeconds()
        let wrote = min(at ?? now, now)
        var set: Item = ["businessId": .s(businessId), "lastCustomerMessageAt": .number(wrote), "expiresAt": .number(now + Self.retentionSeconds)]
        let news = Self.fields(of: profile, inFlight: inFlight, now: now)
        set.merge(news) { $1 }
        do {
            _ = try await store.update(
                table, key: Self.key(platform: platform, account: account, customer: customer), set: set, remove: [],
                condition: .or(.attributeAbsent("lastCustomerMessageAt"), .lessThan("lastCustomerMessageAt", .number(wrote))))
        } catch  where error.code == .conditionFailed {
            // A later message's time is there already: only the rest is news.
            guard !news.isEmpty else { return }
            try await keep(news, platform: platform, account: account, customer: customer, businessId: businessId)
        }
    }

    private static func fields(of profile: ProfileNote?, inFlight: InFlight?, now: Int64) -> Item {
        var fields: Item = [:]
        if profile?.looked == true { fields["profileCheckedAt"] = .number(now) }
        if let name = profile?.name { fields["customerName"] = .s(name) }
        if let inFlight {
            fields["replyInFlight"] = .s(inFlight.messageId)
            fields["replyInFlightUntil"] = .number(inFlight.until)
        }
        return fields
    }

    /// Marks a reply of ours on its way without the customer having written (a private reply
    /// to a comment: no service window opens), so its echo is known as ours.
    public func replyOnItsWay(_ inFlight: InFlight, platform: Platform, account: String, customer: String, businessId: String) async throws(KeyValueError) {
        try await keep(
            Self.fields(of: nil, inFlight: inFlight, now: clock.epochSeconds()), platform: platform, account: account, customer: customer,
            businessId: businessId)
    }

    /// How long a conversation is kept after its last change: past the longest window.
    public static let retentionSeconds: Int64 = humanAgentWindowSeconds + 3600

    /// When the customer last wrote (epoch seconds), if we know.
    public func lastCustomerMessage(platform: Platform, account: String, customer: String) async throws(KeyValueError) -> Int64? {
        try await state(platform: platform, account: account, customer: customer).lastCustomerMessageAt
    }

    /// Who paused the agent in a conversation.
    public enum PauseSource: String, Sendable, Equatable {
        /// A person answered from Meta's apps or another tool (an echo we did not send), or
        /// through `send` with `humanAgent`.
        case human
        /// The agent handed the conversation over.
        case agent
        /// `POST /conversations/pause`.
        case api
    }

    /// What we keep of one conversation.
    public struct State: Sendable, Equatable {
        public var lastCustomerMessageAt: Int64?
        /// The agent does not answer before this time (epoch seconds).
        public var pausedUntil: Int64?
        public var pausedBy: PauseSource?
        /// The customer's name as Meta gives it (WhatsApp's profile name, the Instagram or
        /// Messenger user profile), and when we last asked Meta for it.
        public var customerName: String?
        public var profileCheckedAt: Int64?
        /// The last turn that may be sending a reply (see `InFlight`).
        public var inFlight: InFlight?
        /// What was said while the agent was paused, oldest first, and the version of that list.
        public var backlog: [PauseNote] = []
        public var backlogVersion: Int64 = 0
        /// When the waiting messages are due to be offered to the agent (nil: not to be).
        public var offerAt: Int64?

        public init(
            lastCustomerMessageAt: Int64? = nil, pausedUntil: Int64? = nil, pausedBy: PauseSource? = nil, customerName: String? = nil,
            profileCheckedAt: Int64? = nil, inFlight: InFlight? = nil
        ) {
            self.lastCustomerMessageAt = lastCustomerMessageAt
            self.pausedUntil = pausedUntil
            self.pausedBy = pausedBy
            self.customerName = customerName
            self.profileCheckedAt = profileCheckedAt
            self.inFlight = inFlight
        }

        public func isPaused(at now: Int64) -> Bool { (pausedUntil ?? 0) > now }
    }

    public func state(platform: Platform, account: String, customer: String) async throws(KeyValueError) -> State {
        guard let item = try await store.get(table, key: Self.key(platform: platform, account: account, customer: customer)) else {
            return State()
        }
        var state = State(
            lastCustomerMessageAt: item["lastCustomerMessageAt"]?.int, pausedUntil: item["pausedUntil"]?.int,
            pausedBy: item["pausedBy"]?.string.flatMap(PauseSource.init(rawValue:)), customerName: item["customerName"]?.string,
            profileCheckedAt: item["profileCheckedAt"]?.int,
            inFlight: item["replyInFlight"]?.string.flatMap { id in item["replyInFlightUntil"]?.int.map { InFlight(messageId: id, until: $0) } })
        state.backlog = item["pauseBacklog"]?.list?.compactMap(PauseNote.init(attribute:)) ?? []
        state.backlogVersion = item["pauseBacklogVersion"]?.int ?? 0
        state.offerAt = item["offerAt"]?.int
        return state
    }

    /// Pauses the agent in the conversation until `now + seconds` (a later pause replaces an
    /// earlier one, so every human message extends it). Returns the end of the pause.
    @discardableResult
    public func pause(
        platform: Platform, account: String, customer: String, businessId: String, seconds: Int64, by source: PauseSource
    ) async throws(KeyValueError) -> Int64 {
        let now = clock.epochSeconds()
        let until = now + min(max(seconds, 0), Self.maxPauseSeconds)
        _ = try await store.update(
            table, key: Self.key(platform: platform, account: account, customer: customer),
            set: [
                "businessId": .s(businessId), "pausedUntil": .number(until), "pausedBy": .s(source.rawValue),
                "pausedAt": .number(now), "expiresAt": .number(max(until, now) + Self.retentionSeconds),
                // The business's paused conversations are listed by this (a sparse index).
                "pausedBusinessId": .s(businessId),
            ], remove: [], condition: nil)
        return until
    }

    /// The longest pause: the HUMAN_AGENT window, after which nobody may answer freely anyway.
    public static let maxPauseSeconds: Int64 = humanAgentWindowSeconds

    /// Lets the agent answer again. False when the conversation was not paused.
    @discardableResult
    public func resume(platform: Platform, account: String, customer: String) async throws(KeyValueError) -> Bool {
        let state = try await state(platform: platform, account: account, customer: customer)
        guard state.pausedUntil != nil else { return false }
        // Waiting messages to offer: due now, not when the pause would have ended.
        let set: Item = state.offerAt != nil ? ["offerAt": .number(clock.epochSeconds())] : [:]
        do {
            _ = try await store.update(
                table, key: Self.key(platform: platform, account: account, customer: customer), set: set,
                remove: ["pausedUntil", "pausedBy", "pausedAt", "pausedBusinessId"], condition: .itemPresent)
        } catch  where error.code == .conditionFailed {
            return false
        }
        return state.isPaused(at: clock.epochSeconds())
    }

    /// Writes `fields` on the conversation without its time (a later message's time is there).
    private func keep(_ fields: Item, platform: Platform, account: String, customer: String, businessId: String) async throws(KeyValueError) {
        let now = clock.epochSeconds()
        var set: Item = ["businessId": .s(businessId), "expiresAt": .number(now + Self.retentionSeconds)]
        set.merge(fields) { $1 }
        _ = try await store.update(table, key: Self.key(platform: platform, account: account, customer: customer), set: set, remove: [], condition: nil)
    }

    /// A name is asked of Meta again after a day (a failed lookup too).
    public static let profileRecheckSeconds: Int64 = 24 * 3600

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

// MARK: What was said during a pause

extension Conversations {
    public static let pausedIndex = "paused-by-business"
    public static let offersIndex = "pause-offers"
    /// The one partition of the offers index (few items: only ended pauses with waiting
    /// messages of locations that want them offered).
    static let offerShard = "due"
    /// The most messages kept per pause (the oldest go first).
    public static let maxBacklog = 50
    /// The longest text kept per message.
    public static let maxBacklogText = 2000

    /// A message of the customer's, or the business's person's, while the agent was paused.
    public struct PauseNote: Sendable, Equatable {
        public enum Author: String, Sendable, Equatable, Codable {
            case customer
            /// A person of the business (an echo we did not send).
            case business
        }

        public var messageId: String
        public var from: Author
        /// Epoch seconds.
        public var at: Int64
        /// Kept only where the location allows text to be stored.
        public var text: String?

        public init(messageId: String, from: Author, at: Int64, text: String? = nil) {
            self.messageId = messageId
            self.from = from
            self.at = at
            self.text = text.map { String($0.prefix(Conversations.maxBacklogText)) }
        }

        var attribute: AttributeValue {
            var map: [String: AttributeValue] = ["id": .s(messageId), "from": .s(from.rawValue), "at": .number(at)]
            if let text { map["text"] = .s(text) }
            return .m(map)
        }

        init?(attribute: AttributeValue) {
            guard let map = attribute.map, let id = map["id"]?.string, let from = map["from"]?.string.flatMap(Author.init(rawValue:)),
                let at = map["at"]?.int
            else { return nil }
            self.init(messageId: id, from: from, at: at, text: map["text"]?.string)
        }
    }

    /// Adds `notes` to what was said during the pause (a read-modify-write on the list's
    /// version: two writers at once both land). With `offer`, the waiting messages are to be
    /// offered to the agent when the pause ends, as one turn; `tenant` says whose they are.
    public func keepDuringPause(
        _ notes: [PauseNote], platform: Platform, account: String, customer: String, tenant: Tenant, offer: Bool
    ) async throws(KeyValueError) {
        let key = Self.key(platform: platform, account: account, customer: customer)
        for _ in 0..<5 {
            let state = try await state(platform: platform, account: account, customer: customer)
            var backlog = state.backlog
            for note in notes where !backlog.contains(where: { $0.messageId == note.messageId }) { backlog.append(note) }
            backlog = Array(backlog.suffix(Self.maxBacklog))
            let now = clock.epochSeconds()
            var set: Item = [
                "businessId": .s(tenant.businessId), "locationId": .s(tenant.locationId), "pauseBacklog": .l(backlog.map(\.attribute)),
                "pauseBacklogVersion": .number(state.backlogVersion + 1), "expiresAt": .number(max(state.pausedUntil ?? now, now) + Self.retentionSeconds),
            ]
            if offer, notes.contains(where: { $0.from == .customer }) {
                set["offerShard"] = .s(Self.offerShard)
                set["offerAt"] = .number(state.pausedUntil ?? now)
            }
            let version: Condition =
                state.backlogVersion == 0 ? .attributeAbsent("pauseBacklogVersion") : .equals("pauseBacklogVersion", .number(state.backlogVersion))
            do {
                _ = try await store.update(table, key: key, set: set, remove: [], condition: version)
                return
            } catch  where error.code == .conditionFailed {
                continue
            }
        }
        throw KeyValueError(.conditionFailed, "what was said during a pause changed five times while keeping a message")
    }

    /// Forgets what was said during the pause once a turn carried it to the agent (unless more
    /// was kept since: the version changed, and it stays for the next turn).
    public func clearBacklog(platform: Platform, account: String, customer: String, version: Int64) async throws(KeyValueError) {
        do {
            _ = try await store.update(
                table, key: Self.key(platform: platform, account: account, customer: customer), set: [:],
                remove: ["pauseBacklog", "pauseBacklogVersion", "offerShard", "offerAt"], condition: .equals("pauseBacklogVersion", .number(version)))
        } catch  where error.code == .conditionFailed {
            return
        }
    }

    /// No offer after the pause (what was said stays for the next turn).
    public func dropOffer(platform: Platform, account: String, customer: String) async throws(KeyValueError) {
        _ = try await store.update(
            table, key: Self.key(platform: platform, account: account, customer: customer), set: [:], remove: ["offerShard", "offerAt"],
            condition: .itemPresent)
    }

    /// A paused conversation as the business's tools see it.
    public struct PausedConversation: Sendable, Equatable, Encodable {
        public let platform: String
        public let customerId: String
        public let account: String
        public let locationId: String?
        /// ISO 8601.
        public let pausedUntil: String
        public let pausedBy: String
        /// How many of the customer's messages wait for an answer.
        public let waiting: Int
    }

    /// The business's conversations paused now, the soonest to end first.
    public func paused(businessId: String) async throws(KeyValueError) -> [PausedConversation] {
        let now = clock.epochSeconds()
        let items = try await store.query(table, index: Self.pausedIndex, partitionKey: .s(businessId), sortKeyAtMost: nil)
        return items.compactMap { item -> PausedConversation? in
            guard let until = item["pausedUntil"]?.int, until > now, let id = item["conversationId"]?.string else { return nil }
            let parts = id.split(separator: "#", maxSplits: 2).map(String.init)
            guard parts.count == 3 else { return nil }
            let waiting = (item["pauseBacklog"]?.list ?? []).compactMap(PauseNote.init(attribute:)).filter { $0.from == .customer }.count
            return PausedConversation(
                platform: parts[0], customerId: parts[2], account: parts[1], locationId: item["locationId"]?.string,
                pausedUntil: ISO8601.format(epochSeconds: until), pausedBy: item["pausedBy"]?.string ?? PauseSource.human.rawValue, waiting: waiting)
        }
    }

    /// A conversation whose pause ended with the customer's messages waiting, to offer them to
    /// the agent once.
    public struct DueOffer: Sendable, Equatable {
        public let platform: Platform
        public let account: String
        public let customer: String
        public let tenant: Tenant
        public let state: State
    }

    /// The offers due now: pauses that ended (or were resumed) with messages waiting.
    public func dueOffers(limit: Int = 100) async throws(KeyValueError) -> [DueOffer] {
        let now = clock.epochSeconds()
        let items = try await store.query(table, index: Self.offersIndex, partitionKey: .s(Self.offerShard), sortKeyAtMost: now)
        var due: [DueOffer] = []
        for item in items.prefix(limit) {
            guard let id = item["conversationId"]?.string, let businessId = item["businessId"]?.string else { continue }
            let parts = id.split(separator: "#", maxSplits: 2).map(String.init)
            guard parts.count == 3, let platform = Platform(rawValue: parts[0]) else { continue }
            // The index is read eventually consistent: the item itself says what is true now.
            let state = try await state(platform: platform, account: parts[1], customer: parts[2])
            if let until = state.pausedUntil, state.isPaused(at: now), state.offerAt != nil {
                // The pause was extended (a person wrote again): due when it now ends, so the
                // sweeps do not read it every minute until then.
                _ = try? await store.update(
                    table, key: Self.key(platform: platform, account: parts[1], customer: parts[2]), set: ["offerAt": .number(until)], remove: [],
                    condition: .itemPresent)
                continue
            }
            guard state.offerAt != nil, !state.isPaused(at: now), !state.backlog.isEmpty else { continue }
            due.append(
                DueOffer(
                    platform: platform, account: parts[1], customer: parts[2],
                    tenant: Tenant(businessId: businessId, locationId: item["locationId"]?.string ?? ""), state: state))
        }
        return due
    }
}

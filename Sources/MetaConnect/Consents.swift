import Essentials
import KeyValueStore
import MetaTenancy
import MetaWebhooks

/// A connection the person who logged in has not confirmed yet (issue 38): what Meta's
/// callback found (the accounts, their names, the token, who logged in) and what the link
/// said it was for (the business and location, with their names), held until the person
/// confirms it on our page or cancels, for `lifetimeSeconds` at most. Nothing is connected
/// before the confirmation: no identifier claimed, no token in the connection tables, no
/// webhook subscription.
public struct PendingConnection: Sendable, Equatable {
    public enum Flow: String, Sendable {
        case facebookLogin = "facebook"
        case instagramLogin = "instagram"
        case whatsappSignup = "whatsapp"
    }

    public var flow: Flow
    public var tenant: Tenant
    public var businessName: String?
    public var locationName: String?
    public var pageId: String?
    public var pageName: String?
    public var instagramAccountId: String?
    public var instagramUsername: String?
    /// The Page's token (Facebook Login) or the account's own (Instagram Login).
    public var token: String
    /// Who logged in, as the records name them (`instagram:<id>` for Instagram Login).
    public var connectedBy: String
    /// Instagram Login's token times (epoch seconds).
    public var tokenIssuedAt: Int64?
    public var tokenExpiresAt: Int64?
    /// WhatsApp Embedded Signup's account and number, with the number as it is dialled and the
    /// business name Meta verified for it.
    public var wabaId: String? = nil
    public var phoneNumberId: String? = nil
    public var displayPhoneNumber: String? = nil
    public var verifiedName: String? = nil

    public init(
        flow: Flow, tenant: Tenant, businessName: String? = nil, locationName: String? = nil, pageId: String? = nil, pageName: String? = nil,
        instagramAccountId: String? = nil, instagramUsername: String? = nil, token: String, connectedBy: String, tokenIssuedAt: Int64? = nil,
        tokenExpiresAt: Int64? = nil
    ) {
        self.flow = flow
        self.tenant = tenant
        self.businessName = businessName
        self.locationName = locationName
        self.pageId = pageId
        self.pageName = pageName
        self.instagramAccountId = instagramAccountId
        self.instagramUsername = instagramUsername
        self.token = token
        self.connectedBy = connectedBy
        self.tokenIssuedAt = tokenIssuedAt
        self.tokenExpiresAt = tokenExpiresAt
    }
}

/// Where pending connections wait: items `consent:<nonce>` of the processed-messages table,
/// with its TTL. Taking one is single-use across every execution (a conditional write), and
/// once taken it is deleted and the table's history forgotten, so the token is on disk only
/// while the person decides.
public struct Consents: Sendable {
    public let store: any KeyValueStore
    public let table: TableSchema
    public let clock: WallClock
    /// How long the person has to confirm (the consent page says so).
    public static let lifetimeSeconds: Int64 = 15 * 60

    public init(store: any KeyValueStore, table: TableSchema, clock: WallClock = .system) {
        self.store = store
        self.table = table
        self.clock = clock
    }

    static func key(_ nonce: String) -> Item { ["messageId": .s("consent:\(nonce)")] }

    /// Holds `pending`; returns the nonce that names it (128 random bits).
    public func hold(_ pending: PendingConnection) async throws(KeyValueError) -> String {
        let nonce = OAuthState.randomNonce()
        let now = clock.epochSeconds()
        var item = Self.key(nonce)
        item["status"] = .s("consent")
        item["flow"] = .s(pending.flow.rawValue)
        item["businessId"] = .s(pending.tenant.businessId)
        item["locationId"] = .s(pending.tenant.locationId)
        item["token"] = .s(pending.token)
        item["connectedBy"] = .s(pending.connectedBy)
        item["expiresAt"] = .number(now + Self.lifetimeSeconds)
        for (name, value) in [
            ("businessName", pending.businessName), ("locationName", pending.locationName), ("pageId", pending.pageId), ("pageName", pending.pageName),
            ("instagramAccountId", pending.instagramAccountId), ("instagramUsername", pending.instagramUsername), ("wabaId", pending.wabaId),
            ("phoneNumberId", pending.phoneNumberId), ("displayPhoneNumber", pending.displayPhoneNumber), ("verifiedName", pending.verifiedName),
        ] {
            if let value { item[name] = .s(value) }
        }
        if let issued = pending.tokenIssuedAt { item["tokenIssuedAt"] = .number(issued) }
        if let expires = pending.tokenExpiresAt { item["tokenExpiresAt"] = .number(expires) }
        try await store.put(table, item: item, condition: .itemAbsent)
        return nonce
    }

    /// The pending connection `nonce` names, taken for good (nil: unknown, already taken, or
    /// past its time): a second confirmation of the same page is refused.
    public func take(_ nonce: String) async throws(KeyValueError) -> PendingConnection? {
        guard nonce.utf8.count == 32, nonce.utf8.allSatisfy({ Hex.digitValue($0) != nil }) else { return nil }
        let now = clock.epochSeconds()
        let item: Item
        do {
            item = try await store.update(
                table, key: Self.key(nonce), set: ["takenAt": .number(now)], remove: [],
                condition: .and(.itemPresent, .attributeAbsent("takenAt")))
        } catch  where error.code == .conditionFailed {
            return nil
        }
        guard (item["expiresAt"]?.int ?? 0) > now, let flow = item["flow"]?.string.flatMap(PendingConnection.Flow.init(rawValue:)),
            let businessId = item["businessId"]?.string, let locationId = item["locationId"]?.string, let token = item["token"]?.string,
            let connectedBy = item["connectedBy"]?.string
        else {
            try await discard(nonce)
            return nil
        }
        var pending = PendingConnection(
            flow: flow, tenant: Tenant(businessId: businessId, locationId: locationId), businessName: item["businessName"]?.string,
            locationName: item["locationName"]?.string, pageId: item["pageId"]?.string, pageName: item["pageName"]?.string,
            instagramAccountId: item["instagramAccountId"]?.string, instagramUsername: item["instagramUsername"]?.string, token: token,
            connectedBy: connectedBy, tokenIssuedAt: item["tokenIssuedAt"]?.int, tokenExpiresAt: item["tokenExpiresAt"]?.int)
        pending.wabaId = item["wabaId"]?.string
        pending.phoneNumberId = item["phoneNumberId"]?.string
        pending.displayPhoneNumber = item["displayPhoneNumber"]?.string
        pending.verifiedName = item["verifiedName"]?.string
        return pending
    }

    /// Deletes a pending connection and every trace of it in the table's storage.
    public func discard(_ nonce: String) async throws(KeyValueError) {
        try await store.delete(table, key: Self.key(nonce))
        try await store.forgetHistory(table)
    }
}

import KeyValueStore

/// A business location that connected its Meta accounts.
public struct Tenant: Sendable, Equatable, Codable {
    public let businessId: String
    public let locationId: String

    public init(businessId: String, locationId: String) {
        self.businessId = businessId
        self.locationId = locationId
    }
}

/// What an identifier (Page id, Instagram account id, WhatsApp phone number id) maps to.
public struct TenantRoute: Sendable, Equatable {
    public let tenant: Tenant
    public let platform: String?
    public let identifierType: String?
}

/// A tenant's Meta credentials. The token is never logged nor put in an error message.
public struct TenantCredentials: Sendable, Equatable {
    public let businessId: String
    public let accessToken: String
    public let pageId: String?
    public let instagramAccountId: String?
    public let phoneNumberId: String?
    public let isActive: Bool
    public let inactiveReason: String?

    public init(
        businessId: String, accessToken: String, pageId: String? = nil, instagramAccountId: String? = nil,
        phoneNumberId: String? = nil, isActive: Bool = true, inactiveReason: String? = nil
    ) {
        self.businessId = businessId
        self.accessToken = accessToken
        self.pageId = pageId
        self.instagramAccountId = instagramAccountId
        self.phoneNumberId = phoneNumberId
        self.isActive = isActive
        self.inactiveReason = inactiveReason
    }

    /// The account that sends on `platform`: the Page for Instagram and Messenger (the Page
    /// token speaks for both), the phone number for WhatsApp.
    public func sendingAccount(for platform: Platform) -> String? {
        platform == .whatsapp ? phoneNumberId : pageId
    }

    /// Whether `id` is one of the business's own accounts (a message from it is an echo).
    public func owns(_ id: String) -> Bool {
        [pageId, instagramAccountId, phoneNumberId].contains(id)
    }
}

/// The tenant directory on top of the key-value store: identifier → tenant
/// (`meta-platform-identifiers`) and tenant → credentials (`business-external-credentials`,
/// `serviceType = "meta"`).
public struct TenantDirectory: Sendable {
    public let store: any KeyValueStore
    public let tables: Tables
    private let now: @Sendable () -> String

    public static let serviceType = "meta"

    public init(store: any KeyValueStore, tables: Tables, now: @escaping @Sendable () -> String = ISO8601.now) {
        self.store = store
        self.tables = tables
        self.now = now
    }

    public func route(identifier: String) async throws(KeyValueError) -> TenantRoute? {
        guard let item = try await store.get(tables.identifiers, key: ["identifierId": .s(identifier)]),
            let businessId = item["businessId"]?.string
        else { return nil }
        return TenantRoute(
            tenant: Tenant(businessId: businessId, locationId: item["locationId"]?.string ?? ""),
            platform: item["platform"]?.string, identifierType: item["identifierType"]?.string)
    }

    public func credentials(businessId: String) async throws(KeyValueError) -> TenantCredentials? {
        guard let item = try await store.get(tables.credentials, key: credentialsKey(businessId)),
            let credentials = item["credentials"]?.map,
            let token = credentials["accessToken"]?.string
        else { return nil }
        return TenantCredentials(
            businessId: businessId, accessToken: token, pageId: credentials["pageId"]?.string,
            instagramAccountId: credentials["instagramAccountId"]?.string,
            phoneNumberId: credentials["phoneNumberId"]?.string,
            isActive: item["isActive"]?.bool ?? true, inactiveReason: item["inactiveReason"]?.string)
    }

    /// Marks a tenant's credentials as needing reconnection (an expired or revoked token):
    /// `receive` and `send` stop using them until the business connects again.
    public func markNeedsReconnection(businessId: String, reason: String) async throws(KeyValueError) {
        try await store.update(
            tables.credentials, key: credentialsKey(businessId),
            set: ["isActive": .bool(false), "inactiveReason": .s(reason), "updatedAt": .s(now())],
            remove: [], condition: .itemPresent)
    }

    func credentialsKey(_ businessId: String) -> Item {
        ["businessId": .s(businessId), "serviceType": .s(Self.serviceType)]
    }

    /// The identifiers item for one account of a tenant.
    static func identifierItem(_ identifier: String, type: String, platform: String, tenant: Tenant) -> Item {
        [
            "identifierId": .s(identifier), "identifierType": .s(type), "platform": .s(platform),
            "businessId": .s(tenant.businessId), "locationId": .s(tenant.locationId),
            "businessLocationId": .s("\(tenant.businessId)#\(tenant.locationId)"),
        ]
    }
}

extension TenantDirectory {
    public enum ConnectError: Error, Sendable, Equatable {
        /// The Page or Instagram account is mapped to another business; nothing was changed.
        case ownedByAnotherBusiness(identifier: String)
        case store(KeyValueError)
    }

    /// Claims the Page id and the Instagram account id for `tenant` (conditional writes: an
    /// identifier that belongs to another business is refused and left as it is), then stores
    /// the Page token. Reconnecting the same business refreshes its token.
    public func connect(
        tenant: Tenant, pageId: String, instagramAccountId: String?, pageAccessToken: String
    ) async throws(ConnectError) {
        let mine: Condition = .or(.itemAbsent, .equals("businessId", .s(tenant.businessId)))
        var claimed: [String] = []
        let accounts: [(String, String, String)] =
            [(pageId, "page", "messenger")]
            + (instagramAccountId.map { [($0, "instagram_account", "instagram")] } ?? [])
        do {
            for (identifier, type, platform) in accounts {
                let existed = try await store.get(tables.identifiers, key: ["identifierId": .s(identifier)]) != nil
                let item = Self.identifierItem(identifier, type: type, platform: platform, tenant: tenant)
                guard try await putUnlessTaken(tables.identifiers, item: item, condition: mine) else {
                    // Undo what this attempt newly claimed, so a refused connection leaves nothing behind.
                    for identifier in claimed {
                        try await store.delete(tables.identifiers, key: ["identifierId": .s(identifier)])
                    }
                    throw ConnectError.ownedByAnotherBusiness(identifier: identifier)
                }
                if !existed { claimed.append(identifier) }
            }
            let key = credentialsKey(tenant.businessId)
            let now = self.now()
            let createdAt = try await store.get(tables.credentials, key: key)?["createdAt"] ?? .s(now)
            var credentials: [String: AttributeValue] = ["accessToken": .s(pageAccessToken), "pageId": .s(pageId)]
            if let instagramAccountId { credentials["instagramAccountId"] = .s(instagramAccountId) }
            let existing = try await store.get(tables.credentials, key: key)?["credentials"]?.map
            if let phone = existing?["phoneNumberId"] { credentials["phoneNumberId"] = phone }
            try await store.put(
                tables.credentials,
                item: key.merging([
                    "credentials": .m(credentials), "isActive": .bool(true), "createdAt": createdAt, "updatedAt": .s(now),
                    "locationId": .s(tenant.locationId),
                ]) { $1 })
        } catch let error as ConnectError {
            throw error
        } catch let error as KeyValueError {
            throw .store(error)
        } catch {
            throw .store(KeyValueError(.unavailable, "\(error)"))
        }
    }

    /// A conditional put: false when the condition did not hold.
    private func putUnlessTaken(_ table: TableSchema, item: Item, condition: Condition) async throws(KeyValueError) -> Bool {
        do {
            try await store.put(table, item: item, condition: condition)
            return true
        } catch  where error.code == .conditionFailed {
            return false
        }
    }
}

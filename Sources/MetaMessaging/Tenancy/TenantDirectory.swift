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

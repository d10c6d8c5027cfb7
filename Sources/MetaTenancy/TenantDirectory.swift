import Essentials
import KeyValueStore
import Logging
import MetaGraph
import MetaWebhooks
import Synchronization

/// A business location that connected its Meta accounts.
public struct Tenant: Sendable, Hashable, Codable {
    public let businessId: String
    public let locationId: String

    public init(businessId: String, locationId: String) {
        self.businessId = businessId
        self.locationId = locationId
    }
}

/// Identifiers we accept from outside (a business, a location, an account): letters, digits and `-_.:#@`, 1 to 128 characters.
package func isValidIdentifier(_ text: String) -> Bool {
    !text.isEmpty && text.utf8.count <= 128
        && text.unicodeScalars.allSatisfy { $0.isASCII && (($0.properties.isAlphabetic) || ("0"..."9").contains($0) || "-_.:#@".unicodeScalars.contains($0)) }
}

/// What an identifier (Page id, Instagram account id, WhatsApp phone number id) maps to.
public struct TenantRoute: Sendable, Equatable {
    public let tenant: Tenant
    public let platform: String?
    public let identifierType: String?
}

/// One connection's Meta credentials: a business location's Page (and Instagram account, and
/// WhatsApp number) with its token. The token is never logged nor put in an error message.
public struct TenantCredentials: Sendable, Equatable {
    public let businessId: String
    /// The location whose connection this is; nil for an item of the single-connection shape.
    public var locationId: String? = nil
    /// The `serviceType` of its item: `meta#<locationId>`, or `meta` (the seed's shape).
    public var serviceType: String = TenantDirectory.serviceType
    /// The Page token (Instagram and Messenger); empty for a WhatsApp-only connection.
    public let accessToken: String
    /// The WhatsApp connection's own token (Embedded Signup's business token): WhatsApp never
    /// goes out with a Page token.
    public var whatsappAccessToken: String? = nil
    /// The WhatsApp Business Account of the number, when connected through Embedded Signup.
    public var wabaId: String? = nil
    public let pageId: String?
    public let instagramAccountId: String?
    public let phoneNumberId: String?
    public let isActive: Bool
    public let inactiveReason: String?
    /// Connected through Business Login for Instagram (the Instagram API with Instagram
    /// Login): `accessToken` is the Instagram account's own token, spoken on
    /// `graph.instagram.com`, with no Page.
    public var usesInstagramLogin = false
    /// When an Instagram-Login token expires and when it was issued (epoch seconds).
    public var tokenExpiresAt: Int64? = nil
    public var tokenIssuedAt: Int64? = nil
    /// What the location chose for itself (its agent, its rules); the rest is the default.
    public var settings = LocationSettings()
    /// The names Meta gave the accounts at connect: the Page's, the Instagram username, the
    /// WhatsApp number as it is dialled.
    public var pageName: String? = nil
    public var instagramUsername: String? = nil
    public var displayPhoneNumber: String? = nil

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
    /// An Instagram-Login connection sends Instagram messages as the Instagram account itself.
    public func sendingAccount(for platform: Platform) -> String? {
        switch platform {
        case .whatsapp: phoneNumberId
        case .instagram: usesInstagramLogin ? instagramAccountId : pageId
        case .messenger: usesInstagramLogin ? nil : pageId
        }
    }

    /// The token that speaks for `platform`: the Page token for Instagram and Messenger; for
    /// WhatsApp the WhatsApp connection's token, or, in an item of the seed's single-connection
    /// shape (one token for every channel, written by hand), that one token.
    public func token(for platform: Platform) -> String? {
        switch platform {
        case .messenger where usesInstagramLogin:
            return nil
        case .instagram, .messenger:
            return accessToken.isEmpty ? nil : accessToken
        case .whatsapp:
            if let whatsappAccessToken, !whatsappAccessToken.isEmpty { return whatsappAccessToken }
            return serviceType == TenantDirectory.serviceType && !accessToken.isEmpty ? accessToken : nil
        }
    }

    /// Whether `id` is one of the business's own accounts (a message from it is an echo).
    public func owns(_ id: String) -> Bool {
        [pageId, instagramAccountId, phoneNumberId].contains(id)
    }
}

/// The tenant directory on top of the key-value store: identifier → tenant
/// (`meta-platform-identifiers`) and tenant → connection (`business-external-credentials`).
///
/// Each business location has its own connection, `serviceType = "meta#<locationId>"`, so
/// connecting a second location never touches the first's token. An item of the seed's
/// single-connection shape (`serviceType = "meta"`, one per business) keeps working with no
/// migration step: a location without a connection of its own uses it.
public struct TenantDirectory: Sendable {
    public let store: any KeyValueStore
    public let tables: Tables
    let now: @Sendable () -> String
    /// Routes and connections read lately (receive and process in Lambda; nil: every read
    /// goes to the store).
    public var cache: TenancyCache?

    public static let serviceType = "meta"

    /// The `loginType` of a connection made through Instagram Login (no Page, the account's
    /// own token on Instagram's host).
    public static let instagramLoginType = "instagram"

    public init(store: any KeyValueStore, tables: Tables, now: @escaping @Sendable () -> String = ISO8601.now, cache: TenancyCache? = nil) {
        self.store = store
        self.tables = tables
        self.now = now
        self.cache = cache
    }

    public func route(identifier: String) async throws(KeyValueError) -> TenantRoute? {
        if let cached = cache?.route(identifier) { return cached }
        guard let item = try await store.get(tables.identifiers, key: ["identifierId": .s(identifier)]),
            let businessId = item["businessId"]?.string
        else { return nil }
        let route = TenantRoute(
            tenant: Tenant(businessId: businessId, locationId: item["locationId"]?.string ?? ""),
            platform: item["platform"]?.string, identifierType: item["identifierType"]?.string)
        cache?.keep(route, for: identifier)
        return route
    }

    /// The connection of a business location: its own, or else the business's item of the
    /// single-connection shape.
    public func credentials(tenant: Tenant) async throws(KeyValueError) -> TenantCredentials? {
        if let cached = cache?.credentials(tenant) { return cached }
        let found: TenantCredentials?
        if let own = try await store.get(tables.credentials, key: credentialsKey(tenant.businessId, location: tenant.locationId)),
            let credentials = Self.credentials(from: own)
        {
            found = credentials
        } else {
            found = try await store.get(tables.credentials, key: credentialsKey(tenant.businessId)).flatMap(Self.credentials(from:))
        }
        if let found { cache?.keep(found, for: tenant) }
        return found
    }

    /// Every connection of a business, per location first, the single-connection item last.
    public func connections(businessId: String) async throws(KeyValueError) -> [TenantCredentials] {
        let items = try await store.query(tables.credentials, partitionKey: .s(businessId))
        let connections = items.compactMap { item -> TenantCredentials? in
            guard let type = item["serviceType"]?.string, type == Self.serviceType || type.hasPrefix(Self.serviceType + "#") else { return nil }
            return Self.credentials(from: item)
        }
        return connections.filter { $0.serviceType != Self.serviceType } + connections.filter { $0.serviceType == Self.serviceType }
    }

    /// The business's only connection, for callers that name no location (`send`).
    public func credentials(businessId: String) async throws(KeyValueError) -> TenantCredentials? {
        try await connections(businessId: businessId).first
    }

    static func credentials(from item: Item) -> TenantCredentials? {
        guard let businessId = item["businessId"]?.string, let type = item["serviceType"]?.string,
            let credentials = item["credentials"]?.map
        else { return nil }
        let whatsappToken = credentials["whatsappAccessToken"]?.string
        // A connection needs a token for some channel: a Page token, or a WhatsApp one.
        guard let token = credentials["accessToken"]?.string ?? (whatsappToken != nil ? "" : nil) else { return nil }
        let location = type.hasPrefix(serviceType + "#") ? String(type.dropFirst(serviceType.count + 1)) : item["locationId"]?.string
        var result = TenantCredentials(
            businessId: businessId, accessToken: token, pageId: credentials["pageId"]?.string,
            instagramAccountId: credentials["instagramAccountId"]?.string,
            phoneNumberId: credentials["phoneNumberId"]?.string,
            isActive: item["isActive"]?.bool ?? true, inactiveReason: item["inactiveReason"]?.string)
        result.locationId = location
        result.serviceType = type
        result.whatsappAccessToken = whatsappToken
        result.wabaId = credentials["wabaId"]?.string
        result.usesInstagramLogin = item["loginType"]?.string == TenantDirectory.instagramLoginType
        result.tokenExpiresAt = item["tokenExpiresAt"]?.int
        result.tokenIssuedAt = item["tokenIssuedAt"]?.int
        result.settings = LocationSettings(attribute: item["settings"])
        result.pageName = credentials["pageName"]?.string
        result.instagramUsername = credentials["instagramUsername"]?.string
        result.displayPhoneNumber = credentials["displayPhoneNumber"]?.string
        return result
    }

    /// Marks a connection as needing reconnection (an expired or revoked token): `receive` and
    /// `send` stop using it until the business connects that location again.
    public func markNeedsReconnection(_ credentials: TenantCredentials, reason: String) async throws(KeyValueError) {
        cache?.clear()
        try await store.update(
            tables.credentials, key: ["businessId": .s(credentials.businessId), "serviceType": .s(credentials.serviceType)],
            set: ["isActive": .bool(false), "inactiveReason": .s(reason), "updatedAt": .s(now())],
            remove: [], condition: .itemPresent)
    }

    /// The key of a location's connection, or (no location) of the single-connection item.
    func credentialsKey(_ businessId: String, location: String? = nil) -> Item {
        ["businessId": .s(businessId), "serviceType": .s(location.map { "\(Self.serviceType)#\($0)" } ?? Self.serviceType)]
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
    /// the Page token, with the Page's name and the Instagram username as Meta gave them at
    /// connect (shown on the connect page). Reconnecting the same business refreshes its token.
    public func connect(
        tenant: Tenant, pageId: String, instagramAccountId: String?, pageAccessToken: String, connectedBy: String? = nil,
        pageName: String? = nil, instagramUsername: String? = nil
    ) async throws(ConnectError) {
        cache?.clear()
        var claimed: [String] = []
        let accounts: [(String, String, String)] =
            [(pageId, "page", "messenger")]
            + (instagramAccountId.map { [($0, "instagram_account", "instagram")] } ?? [])
        try await connecting {
            for (identifier, type, platform) in accounts {
                switch try await claim(identifier, type: type, platform: platform, for: tenant) {
                case .refused:
                    // Undo what this attempt newly claimed, so a refused connection leaves nothing behind.
                    for identifier in claimed {
                        try await store.delete(tables.identifiers, key: ["identifierId": .s(identifier)])
                    }
                    throw ConnectError.ownedByAnotherBusiness(identifier: identifier)
                case .claimedNew: claimed.append(identifier)
                case .reclaimed: break
                }
            }
            let key = credentialsKey(tenant.businessId, location: tenant.locationId)
            let now = self.now()
            let current = try await store.get(tables.credentials, key: key)
            // A single-connection item for the same Page or location is this connection's
            // past: its WhatsApp number carries over, and it is removed once the new item is in.
            let legacyKey = credentialsKey(tenant.businessId)
            let legacy = try await store.get(tables.credentials, key: legacyKey)
            let legacyIsThis =
                legacy.map { item in
                    item["credentials"]?.map?["pageId"]?.string == pageId || item["locationId"]?.string == tenant.locationId
                } ?? false
            let createdAt = current?["createdAt"] ?? (legacyIsThis ? legacy?["createdAt"] : nil) ?? .s(now)
            var credentials: [String: AttributeValue] = ["accessToken": .s(pageAccessToken), "pageId": .s(pageId)]
            if let instagramAccountId { credentials["instagramAccountId"] = .s(instagramAccountId) }
            if let pageName { credentials["pageName"] = .s(String(pageName.prefix(200))) }
            if let instagramUsername { credentials["instagramUsername"] = .s(String(instagramUsername.prefix(64))) }
            let existing = current?["credentials"]?.map ?? (legacyIsThis ? legacy?["credentials"]?.map : nil)
            // The location's WhatsApp number stays connected with its own token. From an item
            // of the seed's shape, whose one token served WhatsApp too, that token becomes the
            // number's WhatsApp token: the new Page token never sends on WhatsApp.
            for name in Self.whatsappFields {
                if let value = existing?[name] { credentials[name] = value }
            }
            if existing?["phoneNumberId"] != nil, existing?["whatsappAccessToken"] == nil, current == nil, legacyIsThis,
                let legacyToken = legacy?["credentials"]?.map?["accessToken"]
            {
                credentials["whatsappAccessToken"] = legacyToken
            }
            var item = key.merging([
                "credentials": .m(credentials), "isActive": .bool(true), "createdAt": createdAt, "updatedAt": .s(now),
                "locationId": .s(tenant.locationId),
            ]) { $1 }
            if let connectedBy {
                item["connectedBy"] = .s(connectedBy)
                item["connectedAt"] = .s(now)
            }
            // Connecting again keeps what the location chose.
            item["settings"] = current?["settings"] ?? (legacyIsThis ? legacy?["settings"] : nil)
            try await store.put(tables.credentials, item: item)
            if legacyIsThis { try await store.delete(tables.credentials, key: legacyKey) }
        }
    }

    /// What a WhatsApp connection keeps in the credentials map, carried over when the Page of
    /// the same location is (re)connected.
    static let whatsappFields = ["phoneNumberId", "whatsappAccessToken", "wabaId", "displayPhoneNumber", "registrationPin"]

    /// Claims the WhatsApp phone number id for `tenant` (refused, nothing changed, when another
    /// business has it) and stores the number with its own token in the location's connection,
    /// beside its Page if it has one. Reconnecting refreshes the token.
    public func connectWhatsApp(
        tenant: Tenant, phoneNumberId: String, wabaId: String?, displayPhoneNumber: String?, token: String, registrationPin: String? = nil,
        connectedBy: String? = nil
    ) async throws(ConnectError) {
        cache?.clear()
        try await connecting {
            guard try await claim(phoneNumberId, type: "whatsapp_phone_number", platform: "whatsapp", for: tenant) != .refused else {
                throw ConnectError.ownedByAnotherBusiness(identifier: phoneNumberId)
            }
            let itemKey = credentialsKey(tenant.businessId, location: tenant.locationId)
            let now = self.now()
            let current = try await store.get(tables.credentials, key: itemKey)
            var credentials = current?["credentials"]?.map ?? [:]
            // A location has one number: the one it replaces is released.
            if let previous = credentials["phoneNumberId"]?.string, previous != phoneNumberId {
                let previousKey: Item = ["identifierId": .s(previous)]
                if try await store.get(tables.identifiers, key: previousKey)?["businessId"]?.string == tenant.businessId {
                    try await store.delete(tables.identifiers, key: previousKey)
                }
            }
            credentials["phoneNumberId"] = .s(phoneNumberId)
            credentials["whatsappAccessToken"] = .s(token)
            credentials["wabaId"] = wabaId.map { .s($0) }
            credentials["displayPhoneNumber"] = displayPhoneNumber.map { .s($0) }
            credentials["registrationPin"] = registrationPin.map { .s($0) } ?? credentials["registrationPin"]
            var item = current ?? itemKey.merging(["createdAt": .s(now), "locationId": .s(tenant.locationId)]) { $1 }
            item["credentials"] = .m(credentials)
            item["isActive"] = .bool(true)
            item["inactiveReason"] = nil
            item["updatedAt"] = .s(now)
            if let connectedBy {
                item["whatsappConnectedBy"] = .s(connectedBy)
                item["whatsappConnectedAt"] = .s(now)
            }
            try await store.put(tables.credentials, item: item)
        }
    }

    /// A connect step, whatever it throws reported as a `ConnectError` (store failures as `.store`).
    func connecting(_ body: () async throws -> Void) async throws(ConnectError) {
        do {
            try await body()
        } catch let error as ConnectError {
            throw error
        } catch let error as KeyValueError {
            throw .store(error)
        } catch {
            throw .store(KeyValueError(.unavailable, "\(error)"))
        }
    }

    enum IdentifierClaim: Equatable {
        /// Another business holds it: nothing changed.
        case refused
        /// It was nobody's.
        case claimedNew
        /// It was already this business's (reconnecting).
        case reclaimed
    }

    /// Claims an account id for `tenant` with a conditional write (refused when another
    /// business holds it). Reconnecting keeps when a webhook last arrived for the account.
    func claim(
        _ identifier: String, type: String, platform: String, for tenant: Tenant, extra: Item = [:]
    ) async throws(KeyValueError)
        -> IdentifierClaim
    {
        let current = try await store.get(tables.identifiers, key: ["identifierId": .s(identifier)])
        var item = Self.identifierItem(identifier, type: type, platform: platform, tenant: tenant).merging(extra) { $1 }
        if current?["businessId"]?.string == tenant.businessId, let seen = current?["lastWebhookAt"] { item["lastWebhookAt"] = seen }
        guard try await putUnlessTaken(tables.identifiers, item: item, condition: .or(.itemAbsent, .equals("businessId", .s(tenant.businessId)))) else {
            return .refused
        }
        return current == nil ? .claimedNew : .reclaimed
    }

    /// A conditional put: false when the condition did not hold.
    func putUnlessTaken(_ table: TableSchema, item: Item, condition: Condition) async throws(KeyValueError) -> Bool {
        do {
            try await store.put(table, item: item, condition: condition)
            return true
        } catch  where error.code == .conditionFailed {
            return false
        }
    }
}

// MARK: A tenant's life: who connected, disconnecting, deauthorization, deletion

extension TenantDirectory {
    /// The identifiers-table item that lists the connections a person made (their app-scoped
    /// id, from `GET /me` at the OAuth callback): what Meta's deauthorize and data-deletion
    /// callbacks name.
    static func connectorKey(_ userId: String) -> Item { ["identifierId": .s("meta-user:\(userId)")] }

    /// Records that `userId` connected `tenant` (a conditional read-modify-write: two callbacks
    /// of one person at once both land).
    public func recordConnector(userId: String, tenant: Tenant) async throws(KeyValueError) {
        let entry = "\(tenant.businessId)#\(tenant.locationId)"
        for _ in 0..<5 {
            let current = try await store.get(tables.identifiers, key: Self.connectorKey(userId))
            var entries = current?["connections"]?.list?.compactMap(\.string) ?? []
            if entries.contains(entry) { return }
            entries.append(entry)
            let version = current?["version"]?.int ?? 0
            var item = Self.connectorKey(userId)
            item["identifierType"] = .s("meta_user")
            item["connections"] = .l(entries.map { .s($0) })
            item["version"] = .number(version + 1)
            do {
                try await store.put(tables.identifiers, item: item, condition: current == nil ? .itemAbsent : .equals("version", .number(version)))
                return
            } catch  where error.code == .conditionFailed {
                continue
            }
        }
        throw KeyValueError(.conditionFailed, "the connections of a person changed five times while recording one")
    }

    /// The locations a person connected.
    public func connectionsMade(by userId: String) async throws(KeyValueError) -> [Tenant] {
        let entries = try await store.get(tables.identifiers, key: Self.connectorKey(userId))?["connections"]?.list?.compactMap(\.string) ?? []
        return entries.compactMap { entry in
            let parts = entry.split(separator: "#", maxSplits: 1)
            return parts.count == 2 ? Tenant(businessId: String(parts[0]), locationId: String(parts[1])) : nil
        }
    }

    public func forgetConnector(_ userId: String) async throws(KeyValueError) {
        cache?.clear()
        try await store.delete(tables.identifiers, key: Self.connectorKey(userId))
    }

    /// Takes `tenant` off the list of the locations `userId` connected (the list goes when it
    /// is empty): a disconnected location keeps nothing that names the person.
    func dropConnector(_ userId: String, tenant: Tenant) async throws(KeyValueError) {
        let entry = "\(tenant.businessId)#\(tenant.locationId)"
        for _ in 0..<5 {
            guard let current = try await store.get(tables.identifiers, key: Self.connectorKey(userId)) else { return }
            let entries = current["connections"]?.list?.compactMap(\.string) ?? []
            guard entries.contains(entry) else { return }
            let version = current["version"]?.int ?? 0
            let left = entries.filter { $0 != entry }
            do {
                if left.isEmpty {
                    // The person's id goes with their last location (the store has no
                    // conditional delete: a connection the person makes at this very moment
                    // records itself again).
                    try await store.delete(tables.identifiers, key: Self.connectorKey(userId))
                } else {
                    var item = current
                    item["connections"] = .l(left.map { .s($0) })
                    item["version"] = .number(version + 1)
                    try await store.put(tables.identifiers, item: item, condition: .equals("version", .number(version)))
                }
                return
            } catch  where error.code == .conditionFailed {
                continue
            }
        }
        throw KeyValueError(.conditionFailed, "the connections of a person changed five times while removing one")
    }

    /// The people an item names as having connected it (Facebook Login, WhatsApp signup,
    /// Instagram Login as `instagram:<id>`).
    static func connectors(of item: Item) -> [String] {
        [item["connectedBy"]?.string, item["whatsappConnectedBy"]?.string].compactMap { $0 }
    }

    /// Leaves nothing deleted or overwritten in the connection tables' own storage (the file
    /// store's history of tokens and user ids): what a deletion, a disconnect or a deauthorize
    /// removed is gone from disk when it answers.
    public func forgetHistory() async throws(KeyValueError) {
        try await store.forgetHistory(tables.credentials)
        try await store.forgetHistory(tables.identifiers)
    }

    /// The item of a location's connection: its own, or the single-connection item when it
    /// belongs to that location (or names none and is the business's only one).
    func connectionItemKey(_ tenant: Tenant) async throws(KeyValueError) -> Item? {
        let own = credentialsKey(tenant.businessId, location: tenant.locationId)
        if try await store.get(tables.credentials, key: own) != nil { return own }
        let legacy = credentialsKey(tenant.businessId)
        guard let item = try await store.get(tables.credentials, key: legacy) else { return nil }
        let location = item["locationId"]?.string
        return location == nil || location == tenant.locationId ? legacy : nil
    }

    /// Releases a connection's identifiers that still point at this business: another business
    /// may connect them afterwards. Returns the ids released.
    func release(_ credentials: TenantCredentials) async throws(KeyValueError) -> [String] {
        var released: [String] = []
        for identifier in [credentials.pageId, credentials.instagramAccountId, credentials.phoneNumberId].compactMap({ $0 }) {
            let key: Item = ["identifierId": .s(identifier)]
            guard try await store.get(tables.identifiers, key: key)?["businessId"]?.string == credentials.businessId else { continue }
            try await store.delete(tables.identifiers, key: key)
            released.append(identifier)
        }
        return released
    }

    /// What disconnecting removed.
    public struct Removal: Sendable, Equatable {
        /// The connection as it was (its token included, for the caller's unsubscribe call).
        public let connection: TenantCredentials
        public let releasedIdentifiers: [String]
    }

    /// Removes a location's connection: its identifiers are released and its token deleted.
    /// nil when there was none (disconnecting twice is not an error).
    public func disconnect(_ tenant: Tenant) async throws(KeyValueError) -> Removal? {
        cache?.clear()
        guard let key = try await connectionItemKey(tenant), let item = try await store.get(tables.credentials, key: key),
            let credentials = Self.credentials(from: item)
        else { return nil }
        let released = try await release(credentials)
        try await store.delete(tables.credentials, key: key)
        for person in Self.connectors(of: item) { try await dropConnector(person, tenant: tenant) }
        return Removal(connection: credentials, releasedIdentifiers: released)
    }

    /// Makes a location's connection inactive with `reason`, deletes its token and the ids of
    /// the people who connected it, and releases its identifiers (Meta's deauthorize
    /// callback). The item stays, so the status shows why.
    public func deactivate(_ tenant: Tenant, reason: String) async throws(KeyValueError) -> [String] {
        cache?.clear()
        guard let key = try await connectionItemKey(tenant), let item = try await store.get(tables.credentials, key: key) else { return [] }
        var released: [String] = []
        if let credentials = Self.credentials(from: item) { released = try await release(credentials) }
        var map = item["credentials"]?.map ?? [:]
        map["accessToken"] = nil
        map["whatsappAccessToken"] = nil
        try await store.update(
            tables.credentials, key: key,
            set: ["isActive": .bool(false), "inactiveReason": .s(reason), "updatedAt": .s(now()), "credentials": .m(map)],
            remove: ["connectedBy", "whatsappConnectedBy"], condition: .itemPresent)
        return released
    }
}

// MARK: When a webhook last arrived

extension TenantDirectory {
    /// Records on an identifier's item (`lastWebhookAt`, epoch seconds) that a webhook arrived
    /// for it, unless one was recorded less than `interval` seconds before (a conditional
    /// update: however many processes see the same account, the item is written at most once
    /// per interval) or the identifier is not connected (no item is created). Returns whether
    /// it wrote.
    public func recordWebhookSeen(_ identifier: String, epochSeconds: Int64, interval: Int64 = 60) async throws(KeyValueError) -> Bool {
        let (earliest, overflow) = epochSeconds.subtractingReportingOverflow(interval - 1)
        guard !overflow else { return false }
        do {
            _ = try await store.update(
                tables.identifiers, key: ["identifierId": .s(identifier)], set: ["lastWebhookAt": .number(epochSeconds)],
                condition: .and(.itemPresent, .or(.attributeAbsent("lastWebhookAt"), .lessThan("lastWebhookAt", .number(earliest)))))
            return true
        } catch  where error.code == .conditionFailed {
            return false
        }
    }

    /// The last message Meta could not deliver from an account, on its identifiers item
    /// (`lastDeliveryFailure`: code, title, message id, when), for the connection status.
    public func recordDeliveryFailure(_ status: DeliveryStatus, epochSeconds: Int64) async throws(KeyValueError) {
        var failure: [String: AttributeValue] = ["messageId": .s(status.messageId), "at": .number(epochSeconds)]
        if let code = status.errorCode { failure["code"] = .number(code) }
        if let title = status.errorTitle { failure["title"] = .s(title) }
        do {
            _ = try await store.update(
                tables.identifiers, key: ["identifierId": .s(status.accountId)], set: ["lastDeliveryFailure": .m(failure)], condition: .itemPresent)
        } catch  where error.code == .conditionFailed {
            return
        }
    }

    /// What the connection status shows per identifier.
    public struct AccountActivity: Sendable, Equatable {
        /// When a webhook last arrived for it (epoch seconds).
        public var lastWebhookAt: Int64?
        public var lastDeliveryFailure: DeliveryFailure?
    }

    public struct DeliveryFailure: Sendable, Equatable, Encodable {
        public let messageId: String
        public let code: Int64?
        public let title: String?
        /// ISO 8601.
        public let at: String
    }

    /// When a webhook last arrived for each identifier, and the last delivery failure.
    public func activity(of identifiers: [String]) async throws(KeyValueError) -> [String: AccountActivity] {
        var activity: [String: AccountActivity] = [:]
        for identifier in identifiers {
            let item = try await store.get(tables.identifiers, key: ["identifierId": .s(identifier)])
            let failure = item?["lastDeliveryFailure"]?.map.flatMap { map -> DeliveryFailure? in
                guard let id = map["messageId"]?.string, let at = map["at"]?.int else { return nil }
                return DeliveryFailure(messageId: id, code: map["code"]?.int, title: map["title"]?.string, at: ISO8601.format(epochSeconds: at))
            }
            activity[identifier] = AccountActivity(lastWebhookAt: item?["lastWebhookAt"]?.int, lastDeliveryFailure: failure)
        }
        return activity
    }
}

/// Keeps `receive`'s record of when a webhook last arrived cheap: a process writes for an
/// identifier at most once per interval (the store's conditional update bounds it across
/// processes), and the write happens after the answer to Meta is out.
public final class WebhookSightings: Sendable {
    private let lastWritten = Mutex<[String: Int64]>([:])
    public let interval: Int64
    /// Bounds the memory a flood of distinct (forged ids cannot pass the signature, but many
    /// real accounts can) identifiers may take: the map is cleared when it grows past this.
    public let capacity: Int

    public init(interval: Int64 = 60, capacity: Int = 10_000) {
        self.interval = interval
        self.capacity = capacity
    }

    /// The identifiers of `candidates` this process should record now, marked as recorded.
    public func due(_ candidates: some Sequence<String>, now: Int64) -> [String] {
        lastWritten.withLock { written in
            if written.count > capacity { written.removeAll(keepingCapacity: true) }
            var due: [String] = []
            for identifier in candidates {
                if let last = written[identifier], now >= last, now - last < interval { continue }
                written[identifier] = now
                due.append(identifier)
            }
            return due
        }
    }

    /// Records them in the directory; failures are logged, never raised (it is bookkeeping).
    public func record(_ identifiers: [String], at now: Int64, in directory: TenantDirectory, logger: Logger) async {
        for identifier in identifiers {
            if Task.isCancelled { return }
            do {
                _ = try await directory.recordWebhookSeen(identifier, epochSeconds: now, interval: interval)
            } catch {
                logger.debug("could not record when a webhook arrived", metadata: ["error": "\(error.code.rawValue)"])
            }
        }
    }
}

// MARK: What the connection status reads

/// A connection as stored, active or not (an inactive one may have no token left).
public struct ConnectionRecord: Sendable, Equatable {
    public let businessId: String
    public let locationId: String?
    public let serviceType: String
    public let pageId: String?
    public let instagramAccountId: String?
    public let phoneNumberId: String?
    public let isActive: Bool
    public let inactiveReason: String?
    public let connectedBy: String?
    public let connectedAt: String?
    public let createdAt: String?
    public let updatedAt: String?
    /// Never shown; used to ask Meta about the token and the Page.
    public let accessToken: String?
    /// Never shown; the WhatsApp number's own token.
    public var whatsappAccessToken: String? = nil
    public var wabaId: String? = nil
    /// An Instagram-Login connection: its token's expiry as stored (epoch seconds).
    public var usesInstagramLogin = false
    public var tokenExpiresAt: Int64? = nil
    public var settings = LocationSettings()

    public var identifiers: [String] { [pageId, instagramAccountId, phoneNumberId].compactMap { $0 } }
}

extension TenantDirectory {
    /// Every connection of a business as stored, the inactive ones too.
    public func connectionRecords(businessId: String) async throws(KeyValueError) -> [ConnectionRecord] {
        let items = try await store.query(tables.credentials, partitionKey: .s(businessId))
        return items.compactMap { item -> ConnectionRecord? in
            guard let type = item["serviceType"]?.string, type == Self.serviceType || type.hasPrefix(Self.serviceType + "#") else { return nil }
            let credentials = item["credentials"]?.map ?? [:]
            var record = ConnectionRecord(
                businessId: businessId,
                locationId: type.hasPrefix(Self.serviceType + "#") ? String(type.dropFirst(Self.serviceType.count + 1)) : item["locationId"]?.string,
                serviceType: type, pageId: credentials["pageId"]?.string, instagramAccountId: credentials["instagramAccountId"]?.string,
                phoneNumberId: credentials["phoneNumberId"]?.string, isActive: item["isActive"]?.bool ?? true,
                inactiveReason: item["inactiveReason"]?.string, connectedBy: item["connectedBy"]?.string, connectedAt: item["connectedAt"]?.string,
                createdAt: item["createdAt"]?.string, updatedAt: item["updatedAt"]?.string, accessToken: credentials["accessToken"]?.string)
            record.whatsappAccessToken = credentials["whatsappAccessToken"]?.string
            record.wabaId = credentials["wabaId"]?.string
            record.usesInstagramLogin = item["loginType"]?.string == TenantDirectory.instagramLoginType
            record.tokenExpiresAt = item["tokenExpiresAt"]?.int
            record.settings = LocationSettings(attribute: item["settings"])
            return record
        }
    }
}

// MARK: A location's settings

extension TenantDirectory {
    /// The settings of a location's connection; nil when the location has no connection.
    public func settings(of tenant: Tenant) async throws(KeyValueError) -> LocationSettings? {
        guard let key = try await connectionItemKey(tenant), let item = try await store.get(tables.credentials, key: key) else { return nil }
        return LocationSettings(attribute: item["settings"])
    }

    /// Replaces a location's settings. False when the location has no connection (settings
    /// live with it, and go with it when it is removed).
    public func setSettings(_ settings: LocationSettings, of tenant: Tenant) async throws(KeyValueError) -> Bool {
        cache?.clear()
        guard let key = try await connectionItemKey(tenant) else { return false }
        do {
            _ = try await store.update(
                tables.credentials, key: key, set: ["settings": settings.attribute, "updatedAt": .s(now())], remove: [], condition: .itemPresent)
            return true
        } catch  where error.code == .conditionFailed {
            return false
        }
    }
}

// MARK: What a failed send says about a connection

extension TenantDirectory {
    /// Writes down what a failed send says about the connection: Meta's code 190 (an expired or
    /// revoked token) marks it as needing reconnection, so receive and send stop using it until
    /// the business connects again. Any other failure says nothing about the connection.
    public func record(_ failure: SendError, of credentials: TenantCredentials, logger: Logger) async {
        guard case .tokenExpired(let graph) = failure else { return }
        do {
            try await markNeedsReconnection(credentials, reason: "Graph API code 190\(graph.subcode.map { " subcode \($0)" } ?? "")")
        } catch {
            logger.error("could not mark credentials for reconnection", metadata: ["error": "\(error)"])
        }
    }
}

/// A connection is what the Graph client acts for.
extension TenantCredentials: GraphConnection {}

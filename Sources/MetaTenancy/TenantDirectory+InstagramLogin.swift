import KeyValueStore
import MetaWebhooks

extension TenantDirectory {
    /// Claims the Instagram professional account id for `tenant` (refused, nothing changed,
    /// when another business has it) and makes the location's connection an Instagram-Login
    /// one: the account's own token, its expiry, no Page. A Page and Instagram account the
    /// location had through Facebook Login are released (this connection replaces them); its
    /// WhatsApp number stays. Reconnecting refreshes the token.
    public func connectInstagramLogin(
        tenant: Tenant, instagramAccountId: String, username: String?, token: String, issuedAt: Int64, expiresAt: Int64,
        connectedBy: String? = nil
    ) async throws(ConnectError) {
        cache?.clear()
        try await connecting {
            let claim = try await claim(
                instagramAccountId, type: "instagram_account", platform: "instagram", for: tenant, extra: ["loginType": .s(TenantDirectory.instagramLoginType)])
            guard claim != .refused else {
                throw ConnectError.ownedByAnotherBusiness(identifier: instagramAccountId)
            }
            let key = credentialsKey(tenant.businessId, location: tenant.locationId)
            let now = self.now()
            let current = try await store.get(tables.credentials, key: key)
            let previous = current?["credentials"]?.map ?? [:]
            // The Page and Instagram account of a Facebook-Login connection of this location are
            // released: the Instagram-Login connection replaces them.
            for old in [previous["pageId"]?.string, previous["instagramAccountId"]?.string].compactMap({ $0 }) where old != instagramAccountId {
                let oldKey: Item = ["identifierId": .s(old)]
                if try await store.get(tables.identifiers, key: oldKey)?["businessId"]?.string == tenant.businessId {
                    try await store.delete(tables.identifiers, key: oldKey)
                }
            }
            var credentials: [String: AttributeValue] = ["accessToken": .s(token), "instagramAccountId": .s(instagramAccountId)]
            if let username { credentials["instagramUsername"] = .s(username) }
            for name in Self.whatsappFields {
                if let value = previous[name] { credentials[name] = value }
            }
            var item = key.merging([
                "credentials": .m(credentials), "isActive": .bool(true), "createdAt": current?["createdAt"] ?? .s(now), "updatedAt": .s(now),
                "locationId": .s(tenant.locationId), "loginType": .s(TenantDirectory.instagramLoginType), "tokenIssuedAt": .number(issuedAt),
                "tokenExpiresAt": .number(expiresAt),
            ]) { $1 }
            for name in ["whatsappConnectedBy", "whatsappConnectedAt"] { item[name] = current?[name] }
            if let connectedBy {
                item["connectedBy"] = .s(connectedBy)
                item["connectedAt"] = .s(now)
            }
            try await store.put(tables.credentials, item: item)
        }
    }

    /// Puts a refreshed Instagram-Login token in place, if the connection still holds the token
    /// it was refreshed from (a reconnection meanwhile wins). False when it did not.
    public func replaceInstagramToken(
        _ connection: TenantCredentials, with token: String, issuedAt: Int64, expiresAt: Int64
    ) async throws(KeyValueError) -> Bool {
        cache?.clear()
        let key: Item = ["businessId": .s(connection.businessId), "serviceType": .s(connection.serviceType)]
        guard var item = try await store.get(tables.credentials, key: key), var credentials = item["credentials"]?.map,
            credentials["accessToken"]?.string == connection.accessToken
        else { return false }
        credentials["accessToken"] = .s(token)
        item["credentials"] = .m(credentials)
        item["tokenIssuedAt"] = .number(issuedAt)
        item["tokenExpiresAt"] = .number(expiresAt)
        item["updatedAt"] = .s(now())
        let condition: Condition = connection.tokenIssuedAt.map { .equals("tokenIssuedAt", .number($0)) } ?? .attributeAbsent("tokenIssuedAt")
        do {
            try await store.put(tables.credentials, item: item, condition: .and(.itemPresent, condition))
            return true
        } catch  where error.code == .conditionFailed {
            return false
        }
    }

    /// One page of every connection item (any business), for jobs that walk them all
    /// (`refresh`): at most `limit` items after `after` (nil: from the start), and the key to
    /// go on from (nil: done).
    public func connectionPage(after: Item?, limit: Int) async throws(KeyValueError) -> (connections: [TenantCredentials], next: Item?) {
        let page = try await store.scan(tables.credentials, after: after, limit: limit)
        let connections = page.items.compactMap { item -> TenantCredentials? in
            guard let type = item["serviceType"]?.string, type == Self.serviceType || type.hasPrefix(Self.serviceType + "#") else { return nil }
            return Self.credentials(from: item)
        }
        return (connections, page.next)
    }
}

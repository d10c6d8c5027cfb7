import Essentials
import KeyValueStore
import MetaWebhooks

/// A WhatsApp Business Account's health as Meta's webhooks tell it (WhatsApp Business
/// Platform webhooks `phone_number_quality_update`, `account_update`,
/// `message_template_status_update`), kept on one identifiers-table item per account
/// (`waba-health:<waba-id>`), which the connection status and `send` read.
/// What is kept of a WhatsApp Business Account's health.
public struct WhatsAppHealth: Sendable, Equatable {
    public var qualityEvent: String?
    public var messagingLimit: String?
    public var qualityAt: Int64?
    public var accountEvent: String?
    public var accountAt: Int64?
    /// `name|language` → status (`APPROVED`, `PAUSED`, `REJECTED`, `DISABLED`, ...), from the
    /// webhooks and the last list read from Meta.
    public var templates: [String: String] = [:]
    /// When the whole list was last read from Meta (then a template not in it does not exist).
    public var catalogAt: Int64?

    public static func key(_ wabaId: String) -> Item { ["identifierId": .s("waba-health:\(wabaId)")] }
    public static func templateKey(_ name: String, _ language: String) -> String { "\(name)|\(language)" }

    static let usable: Set<String> = ["APPROVED"]

    /// The templates that cannot be sent now (`name|language` → status): neither approved nor
    /// still in review.
    public var notUsable: [String: String] { templates.filter { !Self.usable.contains($0.value) && $0.value != "PENDING" } }

    /// Why `name` in `language` cannot be sent, or nil (unknown when no list was read).
    public func refusal(of name: String, language: String) -> String? {
        let status = templates[Self.templateKey(name, language)]
        if let status, !Self.usable.contains(status) {
            return "template \(name) (\(language)) is \(status.lowercased()) at Meta: it cannot be sent until it is approved again"
        }
        if status == nil, catalogAt != nil {
            return "template \(name) (\(language)) is not among this number's templates (GET /external/meta/whatsapp/templates lists them)"
        }
        return nil
    }

    /// What the connection status says to do, or nil when all is well.
    public var advice: String? {
        if let event = accountEvent, event != "VERIFIED_ACCOUNT", event != "ACCOUNT_UPDATE" {
            return "Meta reports \(event) on the WhatsApp Business Account: open WhatsApp Manager and resolve it"
        }
        if let event = qualityEvent, ["FLAGGED", "DOWNGRADE"].contains(event) {
            return
                "the number's quality dropped (\(event)\(messagingLimit.map { ", limit \($0)" } ?? "")): send fewer unsolicited templates and check WhatsApp Manager's quality rating"
        }
        let blocked = notUsable.keys.sorted()
        if !blocked.isEmpty {
            return "templates that cannot be sent: \(blocked.joined(separator: ", ")) (paused, rejected or disabled at Meta)"
        }
        return nil
    }
}

extension TenantDirectory {
    public func whatsAppHealth(_ wabaId: String) async throws(KeyValueError) -> WhatsAppHealth? {
        guard let item = try await store.get(tables.identifiers, key: WhatsAppHealth.key(wabaId)) else { return nil }
        var health = WhatsAppHealth()
        health.qualityEvent = item["qualityEvent"]?.string
        health.messagingLimit = item["messagingLimit"]?.string
        health.qualityAt = item["qualityAt"]?.int
        health.accountEvent = item["accountEvent"]?.string
        health.accountAt = item["accountAt"]?.int
        health.catalogAt = item["catalogAt"]?.int
        for (key, value) in item["templates"]?.map ?? [:] {
            if let status = value.string { health.templates[key] = status }
        }
        return health
    }

    /// Records a health webhook (a template's status joins the others: a read-modify-write on
    /// a version, so two at once both land).
    public func record(_ event: WhatsAppHealthEvent) async throws(KeyValueError) {
        let key = WhatsAppHealth.key(event.wabaId)
        let at = event.timestamp / 1000
        switch event.kind {
        case .quality(let number, let quality, let limit, _):
            var set: Item = ["qualityEvent": .s(quality), "qualityAt": .number(at), "identifierType": .s("waba_health")]
            if let limit { set["messagingLimit"] = .s(limit) }
            if let number { set["displayPhoneNumber"] = .s(number) }
            _ = try await store.update(tables.identifiers, key: key, set: set, remove: [], condition: nil)
        case .account(let accountEvent, _):
            _ = try await store.update(
                tables.identifiers, key: key, set: ["accountEvent": .s(accountEvent), "accountAt": .number(at), "identifierType": .s("waba_health")],
                remove: [], condition: nil)
        case .template(let name, let language, let status, _, _):
            try await updateTemplates(event.wabaId) { $0[WhatsAppHealth.templateKey(name, language)] = .s(status) }
        }
    }

    /// Replaces the account's template list with what Meta listed (name|language → status).
    public func recordCatalog(_ wabaId: String, templates: [String: String], at: Int64) async throws(KeyValueError) {
        try await updateTemplates(wabaId, catalogAt: at) { map in
            map = templates.mapValues { .s($0) }
        }
    }

    private func updateTemplates(
        _ wabaId: String, catalogAt: Int64? = nil, _ change: (inout [String: AttributeValue]) -> Void
    ) async throws(KeyValueError) {
        let key = WhatsAppHealth.key(wabaId)
        for _ in 0..<5 {
            let current = try await store.get(tables.identifiers, key: key)
            var map = current?["templates"]?.map ?? [:]
            change(&map)
            let version = current?["templatesVersion"]?.int ?? 0
            var set: Item = ["templates": .m(map), "templatesVersion": .number(version + 1), "identifierType": .s("waba_health")]
            if let catalogAt { set["catalogAt"] = .number(catalogAt) }
            do {
                _ = try await store.update(
                    tables.identifiers, key: key, set: set, remove: [],
                    condition: version == 0 ? .attributeAbsent("templatesVersion") : .equals("templatesVersion", .number(version)))
                return
            } catch  where error.code == .conditionFailed {
                continue
            }
        }
        throw KeyValueError(.conditionFailed, "the account's templates changed five times while recording one")
    }
}

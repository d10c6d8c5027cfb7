import Essentials
import FunctionRuntime
import KeyValueStore
import Logging
import MetaGraph
import MetaTenancy
import MetaWebhooks

/// `GET /external/meta/whatsapp/templates?businessId=&locationId=` (IAM; the `serve` key): the
/// location's WhatsApp number's approved templates from `GET /{waba-id}/message_templates`
/// (name, language, category, and the parameters each component needs), so a CRM can offer
/// them. The whole list (every status) is kept with the account's health, so `send` refuses a
/// template that does not exist or cannot be sent before calling Meta.
extension ConnectionsHandler {
    struct TemplateView: Encodable {
        struct Component: Encodable {
            let type: String
            /// `TEXT`, `IMAGE`, ... for a header.
            let format: String?
            /// How many `{{n}}` parameters its text takes.
            let parameters: Int
        }

        let name: String
        let language: String
        let category: String?
        let components: [Component]
    }

    struct TemplatesAnswer: Encodable {
        let businessId: String
        let locationId: String
        let wabaId: String
        let templates: [TemplateView]
    }

    /// The most pages of templates read (100 each).
    static let maxTemplatePages = 20

    func templates(_ request: HTTPRequest, logger: Logger) async throws(RequestRefused) -> HTTPResponse {
        guard let businessId = request.queryValue("businessId"), isValidIdentifier(businessId),
            let locationId = request.queryValue("locationId"), isValidIdentifier(locationId)
        else {
            throw RequestRefused(400, code: .invalidLocation, "businessId and locationId are required (letters, digits, '-', '_', '.', at most 128)")
        }
        let tenant = Tenant(businessId: businessId, locationId: locationId)
        let credentials: TenantCredentials?
        do {
            credentials = try await directory.credentials(tenant: tenant)
        } catch {
            throw RequestRefused(503, code: .storeUnavailable, "the connection could not be read: \(error.code.rawValue)")
        }
        guard let credentials, let wabaId = credentials.wabaId, let token = credentials.token(for: .whatsapp) else {
            throw RequestRefused(404, code: .noWhatsapp, "this location has no WhatsApp Business Account connected (Embedded Signup)")
        }
        var templates: [TemplateView] = []
        var catalog: [String: String] = [:]
        var path = "\(wabaId)/message_templates"
        var query: [(String, String)] = [("fields", "name,language,status,category,components"), ("limit", "100")]
        for _ in 0..<Self.maxTemplatePages {
            let answer: JSON
            do {
                answer = try await graph.call("GET", path, query: query, token: token, timeout: .seconds(8))
            } catch {
                logger.warning("message_templates failed", metadata: ["wabaId": "\(wabaId)", "detail": "\(error)"])
                throw RequestRefused(502, code: .graphError, Self.notChecked(error))
            }
            for item in answer["data"]?.array ?? [] {
                guard let name = item["name"]?.string, let language = item["language"]?.string else { continue }
                let status = item["status"]?.string ?? "UNKNOWN"
                catalog[WhatsAppHealth.templateKey(name, language)] = status
                guard status == "APPROVED" else { continue }
                let components = (item["components"]?.array ?? []).map { component in
                    TemplateView.Component(
                        type: component["type"]?.string ?? "", format: component["format"]?.string,
                        parameters: Self.parameterCount(component["text"]?.string ?? ""))
                }
                templates.append(TemplateView(name: name, language: language, category: item["category"]?.string, components: components))
            }
            // Graph's own `next` link (GraphClient follows it only on the Graph API's own host:
            // the token goes nowhere else).
            guard let next = answer["paging"]?["next"]?.string else { break }
            path = next
            query = []
        }
        do {
            try await directory.recordCatalog(wabaId, templates: catalog, at: clock.epochSeconds())
        } catch {
            logger.warning("the template list could not be kept for send's checks", metadata: ["error": "\(error.code.rawValue)"])
        }
        return .json(200, TemplatesAnswer(businessId: businessId, locationId: locationId, wabaId: wabaId, templates: templates))
    }

    /// The distinct `{{n}}` placeholders of a component's text.
    static func parameterCount(_ text: String) -> Int {
        var found: Set<String> = []
        var rest = Substring(text)
        while let open = rest.firstRange(of: "{{") {
            let after = rest[open.upperBound...]
            guard let close = after.firstRange(of: "}}") else { break }
            found.insert(String(after[..<close.lowerBound]))
            rest = after[close.upperBound...]
        }
        return found.count
    }
}

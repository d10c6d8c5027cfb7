import Foundation
import MetaMessaging
import MetaWebhooks
import TestSupport
import Testing

/// One route table (issue 35): `serve` is built from `Routes.all`, and `template.yaml`'s API
/// Gateway routes must be exactly its routes: the same methods and paths, answered by the same
/// functions, open or behind IAM as the table says.
@Suite struct RouteTableTests {
    struct DeployedRoute: Hashable {
        let key: String
        let function: String
        let access: HTTPRoute.Access
    }

    /// The `AWS::ApiGatewayV2::Route`s of the template, each with the function its integration
    /// invokes (from `IntegrationUri: !GetAtt <Logical>.Arn` and that function's `CodeUri`).
    static func deployed() throws -> Set<DeployedRoute> {
        let text = try TemplateTests.template()
        // Resources are blocks starting at two spaces of indentation.
        var blocks: [String: String] = [:]
        var name: String?
        var lines: [Substring] = []
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("  "), !line.hasPrefix("   "), line.hasSuffix(":"), !line.contains(" #") {
                if let name { blocks[name] = lines.joined(separator: "\n") }
                name = String(line.dropFirst(2).dropLast())
                lines = []
            } else {
                lines.append(line)
            }
        }
        if let name { blocks[name] = lines.joined(separator: "\n") }
        func value(_ field: String, in block: String) -> String? {
            block.split(separator: "\n").first { $0.trimmingCharacters(in: .whitespaces).hasPrefix(field + ": ") }
                .map { String($0.trimmingCharacters(in: .whitespaces).dropFirst(field.count + 2)) }
        }
        var routes: Set<DeployedRoute> = []
        for (_, block) in blocks where block.contains("Type: AWS::ApiGatewayV2::Route") {
            let key = try #require(value("RouteKey", in: block))
            let target = try #require(value("Target", in: block))
            let integration = try #require(target.components(separatedBy: "${").last?.components(separatedBy: "}").first)
            let uri = try #require(blocks[integration].flatMap { value("IntegrationUri", in: $0) })
            let logical = try #require(uri.components(separatedBy: " ").last?.components(separatedBy: ".").first)
            let code = try #require(blocks[logical].flatMap { value("CodeUri", in: $0) })
            let authorization = try #require(value("AuthorizationType", in: block))
            let access: HTTPRoute.Access = authorization == "NONE" ? .open : .tenant
            routes.insert(DeployedRoute(key: key, function: String(code.dropFirst("functions/".count)), access: access))
        }
        return routes
    }

    @Test func theTemplatesRoutesAreExactlyTheTable() throws {
        let deployed = try Self.deployed()
        let table = Set(Routes.all.map { DeployedRoute(key: $0.key, function: $0.function, access: $0.access) })
        #expect(deployed.count == Routes.all.count)
        #expect(deployed == table, "in the template only: \(deployed.subtracting(table)); in the table only: \(table.subtracting(deployed))")
    }

    @Test func aRequestFindsItsRouteAndOnlyIt() {
        #expect(Routes.route(method: "PUT", path: "/external/meta/connections/B1/L1/settings").route?.function == "connections")
        #expect(
            Routes.route(method: "DELETE", path: "/external/meta/connections/B1/L1").route?.key == "DELETE /external/meta/connections/{businessId}/{locationId}"
        )
        #expect(Routes.route(method: "GET", path: "/external/meta/messages/wamid.ABC%3D").route?.access == .tenant)
        // A known path with another method, an unknown one, an empty parameter.
        let wrongMethod = Routes.route(method: "DELETE", path: "/messages")
        #expect(wrongMethod.route == nil && wrongMethod.pathKnown)
        #expect(Routes.route(method: "GET", path: "/external/meta/connections/B1").pathKnown == false)
        #expect(Routes.route(method: "DELETE", path: "/external/meta/connections//L1").route == nil)
    }
}

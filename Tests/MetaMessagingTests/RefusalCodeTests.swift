import Foundation
import FunctionRuntime
import MetaConnect
import MetaMessaging
import MetaWebhooks
import TestSupport
import Testing

/// Typed refusal codes (issue 35): the docs' error table lists exactly the codes the routes
/// answer with, and every failure whose raw value is a code is one of them.
@Suite struct RefusalCodeTests {
    @Test func theDocsTableListsEveryCodeAndNoOther() throws {
        let docs = try String(contentsOf: Executables.packageRoot.appendingPathComponent("docs/functions.md"), encoding: .utf8)
        let table = try #require(docs.components(separatedBy: "## Error codes").last)
        let listed = try TemplateTests.matches(#"(?m)^\| `([a-z_]+)` \|"#, in: table)
        let codes = Set(RefusalCode.allCases.map(\.rawValue))
        #expect(listed == codes, "documented only: \(listed.subtracting(codes)); in the code only: \(codes.subtracting(listed))")
    }

    @Test func everyStateAndSignatureFailureIsACode() {
        let raw =
            OAuthState.Failure.allCases.map(\.rawValue) + SignedRequest.Failure.allCases.map(\.rawValue)
            + WebhookSignature.Failure.allCases.map(\.rawValue)
        for value in raw { #expect(RefusalCode(rawValue: value) != nil, "\(value)") }
        #expect(RefusalCode(OAuthState.Failure.expired) == .expiredState)
        #expect(RequestRefused(409, code: .alreadyConnected, "taken").response.body.contains(#""error":"already_connected""#))
    }
}

import AWSSigning
import Essentials
import Foundation
import FunctionRuntime
import MetaMessaging
import MetaWebhooks
import NIOHTTPTransport
import SafeJSON
import TestSupport
import Testing

/// The secrets Lambda reads from AWS Secrets Manager at start-up (issue 38), against moto with
/// signature checking on.
@Suite struct DeploymentSecretsTests {
    struct Failure: Error { let message: String }

    /// A secret made in moto; its ARN.
    static func createSecret(_ moto: MotoServer.Connection, name: String, value: String) async throws -> String {
        let client = AWSJSONClient(
            transport: NIOHTTPTransport(), signer: SigV4Signer(credentials: moto.credentials, region: moto.region, service: "secretsmanager"),
            endpoint: moto.endpoint, targetPrefix: "secretsmanager", timeout: .seconds(10), backoff: Backoff(maxAttempts: 1),
            contentType: "application/x-amz-json-1.1")
        let body = Array(try JSONSerialization.data(withJSONObject: ["Name": name, "SecretString": value]))
        let answer = try await client.call("CreateSecret", body: body) { failure -> (Failure, Bool) in
            switch failure {
            case .status(let status, let body): (Failure(message: "HTTP \(status): \(String(decoding: body, as: UTF8.self))"), false)
            case .transport(let error): (Failure(message: error.message), false)
            }
        }
        return try #require((try JSONSerialization.jsonObject(with: Data(answer)) as? [String: Any])?["ARN"] as? String)
    }

    @Test func eachNamedSecretIsReadIntoItsVariableAndHiddenFromTheLogs() async throws {
        let moto = try await MotoServer.shared.start()
        let appSecret = "app-secret-from-secrets-manager-\(UUID().uuidString)"
        let stateSecret = "state-secret-from-secrets-manager-\(UUID().uuidString)"
        let appARN = try await Self.createSecret(moto, name: "meta-app-secret-\(UUID().uuidString)", value: appSecret)
        let stateARN = try await Self.createSecret(moto, name: "oauth-state-secret-\(UUID().uuidString)", value: stateSecret)
        var values = moto.environment
        values["SECRETS_MANAGER_ENDPOINT"] = moto.endpoint
        values["META_APP_SECRET_ARN"] = appARN
        values["OAUTH_STATE_SECRET_ARN"] = stateARN
        values["AGENT_HTTP_SECRET_ARN"] = ""  // the template's empty value: not configured
        let resolved = try await DeploymentSecrets.resolve(Environment(values), transport: NIOHTTPTransport())
        #expect(resolved["META_APP_SECRET"] == appSecret)
        #expect(resolved["OAUTH_STATE_SECRET"] == stateSecret)
        #expect(resolved["AGENT_HTTP_SECRET"] == nil)
        // Whatever logger the process made before, the values are redacted now.
        let line = Redaction().scrub("signed with \(appSecret) and \(stateSecret)")
        #expect(!line.contains(appSecret) && !line.contains(stateSecret))
        #expect(line.contains(Redaction.marker))
    }

    @Test func withoutARNsTheEnvironmentIsLeftAsItIs() async throws {
        let environment = Environment(["META_APP_SECRET": "local-app-secret"])
        let resolved = try await DeploymentSecrets.resolve(environment, transport: NIOHTTPTransport())
        #expect(resolved.values == environment.values)
    }

    /// A secret that cannot be read is a configuration error naming its variable (Lambda
    /// reports it on the init error route), never a function that starts without it; the
    /// error says why in AWS's words and never the ARN's secret.
    @Test func anUnreadableSecretIsAConfigurationErrorNamingItsVariable() async throws {
        let moto = try await MotoServer.shared.start()
        var values = moto.environment
        values["SECRETS_MANAGER_ENDPOINT"] = moto.endpoint
        values["META_APP_SECRET_ARN"] = "arn:aws:secretsmanager:\(moto.region):123456789012:secret:nobody-made-this-AbCdEf"
        do {
            _ = try await DeploymentSecrets.resolve(Environment(values), transport: NIOHTTPTransport())
            Issue.record("a missing secret was taken")
        } catch {
            #expect(error.variable == "META_APP_SECRET_ARN")
            #expect(error.description.contains("ResourceNotFoundException"), "\(error.description)")
        }
        values["META_APP_SECRET_ARN"] = "not an arn"
        await #expect(throws: ConfigurationError.self) { _ = try await DeploymentSecrets.resolve(Environment(values), transport: NIOHTTPTransport()) }
        // No region or credentials: said before any call.
        let bare = Environment(["META_APP_SECRET_ARN": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:x-AbCdEf"])
        await #expect(throws: ConfigurationError.self) { _ = try await DeploymentSecrets.resolve(bare, transport: NIOHTTPTransport()) }
    }
}

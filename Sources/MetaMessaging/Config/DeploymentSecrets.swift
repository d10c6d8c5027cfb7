import AWSSigning
import Essentials
import FunctionRuntime
import HTTPTransport
import MetaWebhooks

/// The product's secrets where AWS keeps secrets (issue 38): in Lambda, `META_APP_SECRET`,
/// `OAUTH_STATE_SECRET`, `INSTAGRAM_APP_SECRET` and `AGENT_HTTP_SECRET` are not environment
/// variables (which anyone allowed `lambda:GetFunctionConfiguration` reads) but AWS Secrets
/// Manager secrets, named by `<NAME>_ARN`. Each execution environment reads the ones its
/// function is given once, at start-up, with the function's own role (allowed those secrets
/// only), so a rotation needs no redeploy: environments started after it read the new value.
/// Locally the variables themselves are read, as before. A secret that cannot be read is a
/// configuration error naming its variable (the function does not start half-configured).
public enum DeploymentSecrets {
    public static let names = ["META_APP_SECRET", "OAUTH_STATE_SECRET", "INSTAGRAM_APP_SECRET", "AGENT_HTTP_SECRET"]

    /// `environment` with every `<NAME>_ARN` read into `<NAME>` (`GetSecretValue`, its
    /// `SecretString`); the values are also given to the logs' redaction.
    public static func resolve(
        _ environment: Environment, transport: any HTTPTransport, clock: WallClock = .system
    ) async throws(ConfigurationError) -> Environment {
        let wanted = names.compactMap { name in environment["\(name)_ARN"].map { (name: name, arn: $0) } }
        guard !wanted.isEmpty else { return environment }
        let region = try environment.required("AWS_REGION")
        guard let credentials = AWSCredentials.fromEnvironment(environment.values) else {
            throw ConfigurationError(variable: "AWS_ACCESS_KEY_ID", problem: "and AWS_SECRET_ACCESS_KEY are required to read \(wanted[0].name)_ARN")
        }
        let client = AWSJSONClient(
            transport: transport, signer: SigV4Signer(credentials: credentials, region: region, service: "secretsmanager"),
            endpoint: environment["SECRETS_MANAGER_ENDPOINT"] ?? "https://secretsmanager.\(region).amazonaws.com", targetPrefix: "secretsmanager",
            timeout: .seconds(3), backoff: Backoff(maxAttempts: 3, base: .milliseconds(100), cap: .seconds(1)),
            contentType: "application/x-amz-json-1.1", clock: clock)
        // Read side by side: a cold start waits for the slowest, not for their sum.
        let read: [(String, Result<String, ConfigurationError>)] = await withTaskGroup(of: (String, Result<String, ConfigurationError>).self) { group in
            for (name, arn) in wanted {
                group.addTask { (name, await secret(arn, for: name, client: client)) }
            }
            var results: [(String, Result<String, ConfigurationError>)] = []
            for await result in group { results.append(result) }
            return results
        }
        var values = environment.values
        var secrets: [String] = []
        for (name, result) in read.sorted(by: { $0.0 < $1.0 }) {
            let value = try result.get()
            values[name] = value
            secrets.append(value)
        }
        Redaction.remember(secrets)
        return Environment(values)
    }

    struct Failure: Error { let message: String }

    static func secret(_ arn: String, for name: String, client: AWSJSONClient) async -> Result<String, ConfigurationError> {
        let variable = "\(name)_ARN"
        guard arn.hasPrefix("arn:"), arn.utf8.count <= 2048, arn.unicodeScalars.allSatisfy({ $0.isASCII && $0.value > 0x20 }) else {
            return .failure(ConfigurationError(variable: variable, problem: "must be a Secrets Manager secret's ARN"))
        }
        let answer: [UInt8]
        do {
            answer = try await client.call("GetSecretValue", body: JSON.dictionary(["SecretId": .string(arn)]).encoded()) { failure -> (Failure, Bool) in
                switch failure {
                case .status(let status, let body):
                    // The error's type only (AccessDeniedException, ResourceNotFoundException, ...).
                    let type = (try? JSON.parse(body))?["__type"]?.string.map { String($0.split(separator: "#").last ?? "") } ?? "HTTP \(status)"
                    return (Failure(message: type), status >= 500 || type.contains("Throttling"))
                case .transport(let error):
                    return (Failure(message: "Secrets Manager could not be reached (\(error.kind))"), true)
                }
            }
        } catch {
            return .failure(ConfigurationError(variable: variable, problem: "names a secret that could not be read: \(error.message)"))
        }
        guard let value = (try? JSON.parse(answer))?["SecretString"]?.string, !value.isEmpty else {
            return .failure(ConfigurationError(variable: variable, problem: "names a secret without a SecretString"))
        }
        return .success(value)
    }
}

import AWSSigning
import LocalHTTPServer

/// What an AWS service checks before anything else: the credential scope, the session token,
/// and the SigV4 signature recomputed with the known secret over the request as it arrived.
/// The loopback stand-ins of Bedrock and Lambda answer 403 as AWS does when it fails.
public enum SigV4Check {
    public static func passes(_ request: LoopbackServer.Request, credentials: AWSCredentials, region: String, service: String) -> Bool {
        guard let authorization = request.header("Authorization"), authorization.contains("/\(region)/\(service)/aws4_request"),
            request.header("X-Amz-Security-Token") == credentials.sessionToken
        else { return false }
        let signedNames =
            authorization.split(separator: ",").first { $0.contains("SignedHeaders=") }?.split(separator: "=").last?.split(separator: ";").map(String.init)
            ?? []
        let signed = signedNames.compactMap { name in request.header(name).map { (name, $0) } }
        let expected = SigV4Signer(credentials: credentials, region: region, service: service)
            .canonicalParts(method: request.method, url: "http://\(request.header("Host") ?? "")\(request.uri)", headers: signed, body: request.body)
        return expected.authorization == authorization
    }

    /// AWS's answer to a request whose signature does not check out.
    public static let refusal = LoopbackServer.Response.json(
        403, #"{"message":"The request signature we calculated does not match the signature you provided."}"#)
}

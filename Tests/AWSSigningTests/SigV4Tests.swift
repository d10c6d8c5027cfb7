import AWSSigning
import Foundation
import HTTPTransport
import Testing

@Suite struct SigV4Tests {
    struct Suite: Decodable {
        struct Vector: Decodable {
            let name: String
            let method: String
            let url: String
            let headers: [[String]]
            let body: String
            let sessionToken: String?
            let authorization: String
        }
        let accessKeyID: String
        let secretAccessKey: String
        let region: String
        let service: String
        let vectors: [Vector]
    }

    /// The vectors, or none (then `vectorsAreThere` fails, rather than the whole test process).
    static let suite: Suite = {
        guard let url = Bundle.module.url(forResource: "Fixtures/sigv4-vectors", withExtension: "json"),
            let data = try? Data(contentsOf: url), let suite = try? JSONDecoder().decode(Suite.self, from: data)
        else { return Suite(accessKeyID: "", secretAccessKey: "", region: "", service: "", vectors: []) }
        return suite
    }()

    @Test func vectorsAreThere() {
        #expect(Self.suite.vectors.count > 3)
    }

    /// SigV4 re-encodes query strings from their decoded form; `+` stays a plus there, while
    /// a form-encoded query string (API Gateway's) reads it as a space.
    @Test func percentDecodingWithAndWithoutPlusAsSpace() {
        #expect(FormEncoding.decode("a+b%2Bc%e2%82%ac%zz%4", plusIsSpace: false) == "a+b+c€%zz%4")
        #expect(FormEncoding.decode("a+b%2Bc%E2%82%AC%zz%4", plusIsSpace: true) == "a b+c€%zz%4")
    }

    @Test(arguments: suite.vectors.map(\.name))
    func awsTestSuiteVector(_ name: String) throws {
        let suite = Self.suite
        let vector = try #require(suite.vectors.first { $0.name == name })
        let signer = SigV4Signer(
            credentials: AWSCredentials(accessKeyID: suite.accessKeyID, secretAccessKey: suite.secretAccessKey, sessionToken: vector.sessionToken),
            region: suite.region, service: suite.service)
        let parts = signer.canonicalParts(
            method: vector.method, url: vector.url, headers: vector.headers.map { ($0[0], $0[1]) }, body: Array(vector.body.utf8))
        #expect(parts.authorization == vector.authorization)
    }

    @Test func signAddsDateTokenAndAuthorizationForTheGivenTime() throws {
        let suite = Self.suite
        // 2015-08-30T12:36:00Z
        let signer = SigV4Signer(
            credentials: AWSCredentials(accessKeyID: suite.accessKeyID, secretAccessKey: suite.secretAccessKey),
            region: suite.region, service: suite.service)
        let headers = signer.sign(method: "GET", url: "https://example.amazonaws.com/", headers: [], body: [], date: 1_440_938_160)
        #expect(headers.first { $0.0 == "X-Amz-Date" }?.1 == "20150830T123600Z")
        #expect(headers.first { $0.0 == "Host" }?.1 == "example.amazonaws.com")
        #expect(headers.first { $0.0 == "Authorization" }?.1 == suite.vectors[0].authorization)

        let withToken = SigV4Signer(
            credentials: AWSCredentials(accessKeyID: suite.accessKeyID, secretAccessKey: suite.secretAccessKey, sessionToken: suite.vectors[4].sessionToken),
            region: suite.region, service: suite.service
        )
        .sign(method: "POST", url: "https://example.amazonaws.com/", headers: [], body: [], date: 1_440_938_160)
        #expect(withToken.first { $0.0 == "Authorization" }?.1 == suite.vectors[4].authorization)
        #expect(!withToken.contains { $0.1.contains(suite.secretAccessKey) })
    }

    @Test func hostHeaderKeepsANonDefaultPort() {
        let signer = SigV4Signer(credentials: AWSCredentials(accessKeyID: "a", secretAccessKey: "b"), region: "eu-west-1", service: "dynamodb")
        let headers = signer.sign(method: "POST", url: "http://127.0.0.1:5000/", headers: [], body: [], date: 0)
        #expect(headers.first { $0.0 == "Host" }?.1 == "127.0.0.1:5000")
        let https = signer.sign(method: "POST", url: "https://dynamodb.eu-west-1.amazonaws.com:443/", headers: [], body: [], date: 0)
        #expect(https.first { $0.0 == "Host" }?.1 == "dynamodb.eu-west-1.amazonaws.com")
    }
}

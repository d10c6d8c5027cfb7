import AWSSigning
import Foundation
import HTTPTransport
import KeyValueStore
import NIOHTTPTransport
import TestSupport
import Testing

@Suite struct DynamoDBStoreTests {
    let table = TableSchema(name: "kv-test", partitionKey: "id")

    @Test func aWrongSignatureIsRefused() async throws {
        let moto = try await MotoServer.shared.start()
        let good = DynamoDBStore(transport: NIOHTTPTransport(), region: moto.region, endpoint: moto.endpoint, credentials: moto.credentials)
        let name = TableSchema(name: Stores.unique("signed"), partitionKey: "id")
        try await good.createTable(name)
        let forged = AWSCredentials(accessKeyID: moto.credentials.accessKeyID, secretAccessKey: "not-the-secret", sessionToken: moto.credentials.sessionToken)
        let bad = DynamoDBStore(transport: NIOHTTPTransport(), region: moto.region, endpoint: moto.endpoint, credentials: forged)
        do {
            try await bad.put(name, item: ["id": .s("x")])
            Issue.record("moto accepted a wrong signature")
        } catch {
            #expect(error.code == .accessDenied)
            #expect(!error.message.contains("not-the-secret"))
        }
        #expect(try await good.get(name, key: ["id": .s("x")]) == nil)
    }

    @Test func requestsFollowTheJSON10Protocol() async throws {
        let seen = Recorder()
        let server = try await LoopbackServer { request in
            await seen.add(request)
            return .json(200, #"{"Item":{"id":{"S":"x"},"v":{"N":"7"}}}"#)
        }
        let store = DynamoDBStore(
            transport: NIOHTTPTransport(), region: "eu-west-1", endpoint: server.baseURL,
            credentials: AWSCredentials(accessKeyID: "AKID", secretAccessKey: "secret", sessionToken: "token"))
        let item = try await store.get(table, key: ["id": .s("x")])
        #expect(item?["v"] == .n("7"))
        let request = try #require(await seen.all.first)
        #expect(request.method == "POST")
        #expect(request.path == "/")
        #expect(request.header("X-Amz-Target") == "DynamoDB_20120810.GetItem")
        #expect(request.header("Content-Type") == "application/x-amz-json-1.0")
        #expect(request.header("X-Amz-Security-Token") == "token")
        let authorization = try #require(request.header("Authorization"))
        #expect(authorization.hasPrefix("AWS4-HMAC-SHA256 Credential=AKID/"))
        #expect(authorization.contains("/eu-west-1/dynamodb/aws4_request"))
        #expect(authorization.contains("x-amz-security-token"))
        #expect(request.jsonBody?["TableName"] as? String == "kv-test")
        #expect(request.jsonBody?["ConsistentRead"] as? Bool == true)
        await server.shutdown()
    }

    @Test func serverErrorsAndThrottlingAreRetriedThenSucceed() async throws {
        let seen = Recorder()
        let server = try await LoopbackServer { request in
            let count = await seen.add(request)
            switch count {
            case 1: return .json(500, #"{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError","message":"boom"}"#)
            case 2: return .json(400, #"{"__type":"com.amazonaws.dynamodb.v20120810#ThrottlingException","message":"slow down"}"#)
            default: return .json(200, "{}")
            }
        }
        let store = DynamoDBStore(
            transport: NIOHTTPTransport(), region: "eu-west-1", endpoint: server.baseURL,
            credentials: AWSCredentials(accessKeyID: "a", secretAccessKey: "b"), backoff: Backoff(maxAttempts: 4, base: .milliseconds(5)))
        try await store.put(table, item: ["id": .s("x")])
        #expect(await seen.count == 3)
        await server.shutdown()
    }

    @Test func persistentThrottlingGivesUpAfterABoundedNumberOfAttempts() async throws {
        let seen = Recorder()
        let server = try await LoopbackServer { request in
            await seen.add(request)
            return .json(400, #"{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException","message":"no"}"#)
        }
        let store = DynamoDBStore(
            transport: NIOHTTPTransport(), region: "eu-west-1", endpoint: server.baseURL,
            credentials: AWSCredentials(accessKeyID: "a", secretAccessKey: "b"), backoff: Backoff(maxAttempts: 3, base: .milliseconds(5)))
        do {
            try await store.put(table, item: ["id": .s("x")])
            Issue.record("throttling was not reported")
        } catch {
            #expect(error.code == .unavailable)
            #expect(error.isTransient)
        }
        #expect(await seen.count == 3)
        await server.shutdown()
    }

    @Test func aConditionFailureIsNotRetriedAndIsDistinct() async throws {
        let seen = Recorder()
        let server = try await LoopbackServer { request in
            await seen.add(request)
            return .json(400, #"{"__type":"com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException","message":"The conditional request failed"}"#)
        }
        let store = DynamoDBStore(
            transport: NIOHTTPTransport(), region: "eu-west-1", endpoint: server.baseURL,
            credentials: AWSCredentials(accessKeyID: "a", secretAccessKey: "b"))
        do {
            try await store.put(table, item: ["id": .s("x")], condition: .itemAbsent)
        } catch {
            #expect(error.code == .conditionFailed)
        }
        #expect(await seen.count == 1)
        let body = try #require(await seen.all.first?.jsonBody)
        #expect(body["ConditionExpression"] as? String == "attribute_not_exists(#n0)")
        #expect((body["ExpressionAttributeNames"] as? [String: String])?["#n0"] == "id")
        await server.shutdown()
    }

    @Test func garbageAnswersAreInvalidResponses() async throws {
        let server = try await LoopbackServer { _ in LoopbackServer.Response(status: 200, body: Array("<html>hello</html>".utf8)) }
        let store = DynamoDBStore(
            transport: NIOHTTPTransport(), region: "eu-west-1", endpoint: server.baseURL,
            credentials: AWSCredentials(accessKeyID: "a", secretAccessKey: "b"))
        do {
            _ = try await store.get(table, key: ["id": .s("x")])
            Issue.record("garbage was accepted")
        } catch {
            #expect(error.code == .invalidResponse)
        }
        await server.shutdown()
    }

    @Test func aServerThatNeverAnswersTimesOut() async throws {
        let server = try await LoopbackServer { _ in
            try? await Task.sleep(for: .seconds(10))
            return .json(200, "{}")
        }
        let store = DynamoDBStore(
            transport: NIOHTTPTransport(), region: "eu-west-1", endpoint: server.baseURL,
            credentials: AWSCredentials(accessKeyID: "a", secretAccessKey: "b"),
            backoff: Backoff(maxAttempts: 2, base: .milliseconds(5)), timeout: .milliseconds(200))
        let start = ContinuousClock.now
        do {
            _ = try await store.get(table, key: ["id": .s("x")])
            Issue.record("no timeout")
        } catch {
            #expect(error.code == .timeout)
        }
        // Two attempts of 200 ms and a short backoff end long before the server's 10 s (the
        // bound is loose on purpose: it tells a timeout from a wait, not how fast it is).
        #expect(ContinuousClock.now - start < .seconds(9))
        await server.shutdown()
    }

    @Test func anUnreachableServerIsUnavailable() async throws {
        let store = DynamoDBStore(
            transport: NIOHTTPTransport(), region: "eu-west-1", endpoint: "http://127.0.0.1:1",
            credentials: AWSCredentials(accessKeyID: "a", secretAccessKey: "b"),
            backoff: Backoff(maxAttempts: 2, base: .milliseconds(5)))
        do {
            _ = try await store.get(table, key: ["id": .s("x")])
            Issue.record("an unreachable server answered")
        } catch {
            #expect(error.code == .unavailable)
        }
    }
}

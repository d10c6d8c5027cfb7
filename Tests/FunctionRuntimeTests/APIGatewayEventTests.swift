import Foundation
import FunctionRuntime
import TestSupport
import Testing

@Suite struct APIGatewayEventTests {
    private func decode(_ json: String) throws -> HTTPRequest {
        try APIGatewayEvent.decode(Array(json.utf8))
    }

    @Test func restPayloadFromTheSampleEvent() throws {
        let request = try APIGatewayEvent.decode(TestEvents.load("verify.json"))
        #expect(request.method == "GET")
        #expect(request.path == "/webhooks/meta")
        #expect(request.queryValue("hub.challenge") == "1158201444")
        #expect(request.headers["user-agent"] == "facebookplatform/1.0 (+http://developers.facebook.com)")
        #expect(request.headers["USER-AGENT"] == request.headers["User-Agent"])
        #expect(request.body.isEmpty)
    }

    @Test func httpAPIPayloadFromTheSampleEvent() throws {
        let request = try APIGatewayEvent.decode(TestEvents.load("verify-http-api.json"))
        #expect(request.method == "GET")
        #expect(request.path == "/webhooks/meta")
        #expect(request.query["hub.verify_token"] == ["local-verify-token"])
        #expect(request.headers["Host"] == "abcdef1234.execute-api.eu-west-1.amazonaws.com")
    }

    @Test func base64BodyIsDecodedToTheExactBytes() throws {
        let bytes: [UInt8] = [0x7B, 0x22, 0xC3, 0xA9, 0x5C, 0x2F, 0x22, 0x7D, 0xFF, 0x00]
        let encoded = Data(bytes).base64EncodedString()
        let request = try decode(
            """
            {"version":"2.0","rawPath":"/webhooks/meta","rawQueryString":"","headers":{"content-type":"application/json"},
             "requestContext":{"http":{"method":"POST","path":"/webhooks/meta"}},"body":"\(encoded)","isBase64Encoded":true}
            """)
        #expect(request.method == "POST")
        #expect(request.body == bytes)
    }

    @Test func plainBodyKeepsItsUTF8Bytes() throws {
        let request = try decode(#"{"httpMethod":"POST","path":"/x","body":"{\"a\":\"é\\/\"}","isBase64Encoded":false}"#)
        #expect(request.body == Array(#"{"a":"é\/"}"#.utf8))
    }

    @Test func invalidBase64IsAClearError() {
        #expect(throws: APIGatewayEvent.DecodingError.self) {
            try decode(#"{"httpMethod":"POST","path":"/x","body":"not base64!!","isBase64Encoded":true}"#)
        }
    }

    @Test func absentAndNullMapsAreEmpty() throws {
        let request = try decode(
            """
            {"httpMethod":"GET","path":"/x","headers":null,"multiValueHeaders":null,
             "queryStringParameters":null,"multiValueQueryStringParameters":null,"body":null}
            """)
        #expect(request.headers.fields.isEmpty)
        #expect(request.query.isEmpty)
        #expect(request.body.isEmpty)
        let minimal = try decode(#"{"version":"2.0","rawPath":"/y","requestContext":{"http":{"method":"get"}}}"#)
        #expect(minimal.method == "GET")
        #expect(minimal.path == "/y")
        #expect(minimal.query.isEmpty)
    }

    @Test func multiValueQueryStringsInBothFormats() throws {
        let rest = try decode(
            """
            {"httpMethod":"GET","path":"/x","queryStringParameters":{"a":"2"},
             "multiValueQueryStringParameters":{"a":["1","2"],"b":["x y"]}}
            """)
        #expect(rest.query["a"] == ["1", "2"])
        #expect(rest.query["b"] == ["x y"])
        let http = try decode(
            """
            {"version":"2.0","rawPath":"/x","rawQueryString":"a=1&a=2&b=x%20y&c=%2B%26&d",
             "queryStringParameters":{"a":"1,2","b":"x y"},"requestContext":{"http":{"method":"GET"}}}
            """)
        #expect(http.query["a"] == ["1", "2"])
        #expect(http.query["b"] == ["x y"])
        #expect(http.query["c"] == ["+&"])
        #expect(http.query["d"] == [""])
        let plus = try decode(#"{"version":"2.0","rawPath":"/x","rawQueryString":"q=a+b%2Bc&bad=%zz%4","requestContext":{"http":{"method":"GET"}}}"#)
        #expect(plus.query["q"] == ["a b+c"])
        #expect(plus.query["bad"] == ["%zz%4"])
    }

    @Test func headersMatchWhateverTheirCase() throws {
        let request = try decode(
            """
            {"httpMethod":"POST","path":"/x","headers":{"X-Hub-Signature-256":"sha256=ab","content-TYPE":"application/json"},
             "multiValueHeaders":{"X-Hub-Signature-256":["sha256=ab"],"content-TYPE":["application/json"],"Accept":["a","b"]}}
            """)
        #expect(request.headers["x-hub-signature-256"] == "sha256=ab")
        #expect(request.headers["Content-Type"] == "application/json")
        #expect(request.headers.values("accept") == ["a", "b"])
    }

    @Test func cookiesFromBothFormats() throws {
        let http = try decode(#"{"version":"2.0","rawPath":"/","cookies":["a=1","b=2"],"requestContext":{"http":{"method":"GET"}}}"#)
        #expect(http.cookies == ["a=1", "b=2"])
        let rest = try decode(#"{"httpMethod":"GET","path":"/","headers":{"Cookie":"a=1; b=2"}}"#)
        #expect(rest.cookies == ["a=1", "b=2"])
    }

    @Test(arguments: [
        "", "not json", "[1,2]", #"{"httpMethod":5,"path":"/"}"#, #"{"path":"/"}"#, #"{"httpMethod":"GET","headers":"x"}"#,
        #"{"httpMethod":"GET","requestContext":"x"}"#, #"{"version":"2.0","rawPath":"/","requestContext":{"http":5}}"#,
    ])
    func malformedEventsAreClearErrors(_ json: String) {
        #expect(throws: APIGatewayEvent.DecodingError.self) { try decode(json) }
    }

    @Test func responseIsAProxyResponse() throws {
        let bytes = APIGatewayEvent.encode(.text(200, "ok"))
        let object = try #require(try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any])
        #expect(object["statusCode"] as? Int == 200)
        #expect(object["body"] as? String == "ok")
        #expect(object["isBase64Encoded"] as? Bool == false)
        #expect((object["headers"] as? [String: String])?["Content-Type"] == "text/plain; charset=utf-8")
    }
}

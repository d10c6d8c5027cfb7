import Foundation
import FunctionRuntime
import SafeJSON
import TestSupport
import Testing

/// The runtime's own JSON reader and writer, checked against Foundation's JSONSerialization as
/// an independent implementation of RFC 8259.
@Suite struct JSONReaderWriterTests {
    /// Whether the reader's value is the one JSONSerialization reads from the same bytes.
    private func same(_ node: JSONNode, _ object: Any) -> Bool {
        switch node {
        case .null: return object is NSNull
        case .bool(let flag): return (object as? Bool) == flag
        case .number(let text):
            guard let value = Double(text) else { return false }
            if let integer = object as? Int { return Double(integer) == value }
            if let double = object as? Double { return double == value }
            return (object as? NSNumber)?.doubleValue == value
        case .string(let text): return (object as? String) == text
        case .array(let elements):
            guard let array = object as? [Any], array.count == elements.count else { return false }
            return zip(elements, array).allSatisfy { same($0, $1) }
        case .object(let members):
            guard let dictionary = object as? [String: Any], dictionary.count == Set(members.map(\.key)).count else { return false }
            return members.allSatisfy { member in dictionary[member.key].map { same(node[member.key] ?? .null, $0) } ?? false }
        }
    }

    private func foundation(_ bytes: [UInt8]) -> Any? {
        try? JSONSerialization.jsonObject(with: Data(bytes), options: [.fragmentsAllowed])
    }

    @Test(arguments: [
        "verify.json", "verify-http-api.json", "instagram-text.json", "messenger-text.json", "whatsapp-text.json", "whatsapp-status.json",
        "send-api-gateway.json", "process-sqs.json", "oauth-callback.json",
    ])
    func sampleEventsReadAsFoundationReadsThem(_ name: String) throws {
        let bytes = TestEvents.load(name)
        let node = try JSONReader.read(bytes)
        let object = try #require(foundation(bytes))
        #expect(same(node, object))
    }

    @Test(arguments: [
        #"{"a":[1,-2.5,3e2,-0,0.125E-3,true,false,null],"b":{"c":{}},"d":[]}"#,
        #""plain""#,
        #""esc \" \\ \/ \b \f \n \r \t""#,
        #""\u00e9\u4e2d\uD83D\uDE00 é中😀""#,
        " \n\t{ \"spaced\" :\r\n [ 1 , 2 ] } \n",
        "12345678901234567890",
    ])
    func validDocumentsReadAsFoundationReadsThem(_ text: String) throws {
        let bytes = Array(text.utf8)
        let node = try JSONReader.read(bytes)
        let object = try #require(foundation(bytes))
        #expect(same(node, object))
    }

    @Test func escapesBecomeTheirCharacters() throws {
        let node = try JSONReader.read(Array(#"["a\u00e9\ud83d\ude00\n\/\"", "\u0000"]"#.utf8))
        #expect(node == .array([.string("aé😀\n/\""), .string("\u{0}")]))
    }

    @Test(arguments: [
        "", " ", "{", "}", "[1,]", #"{"a":1,}"#, #"{"a" 1}"#, #"{a:1}"#, "{'a':1}", "[1 2]",
        "01", "1.", ".5", "-", "+1", "1e", "1e+", "NaN", "Infinity", "nul", "truex", "tru",
        #""unterminated"#, #""bad \x escape""#, #""\u12""#, #""\uD800""#, #""\uDC00 low first""#,
        #""\uD800\u0041""#, "\"raw \u{01} control\"", "\"raw\ttab\"", "{} {}", "[] x", "// comment\n1",
    ])
    func malformedDocumentsAreRefused(_ text: String) {
        #expect(throws: JSONReadError.self) { try JSONReader.read(Array(text.utf8)) }
    }

    @Test func aLeadingByteOrderMarkIsSkipped() throws {
        #expect(try JSONReader.read([0xEF, 0xBB, 0xBF] + Array(#"{"a":"b"}"#.utf8)) == .object([(key: "a", value: .string("b"))]))
        #expect(throws: JSONReadError.self) { try JSONReader.read(Array(#"{"a":"b"}"#.utf8) + [0xEF, 0xBB, 0xBF]) }
    }

    @Test func invalidUTF8IsRefused() {
        for bytes: [UInt8] in [[0x22, 0xC3, 0x28, 0x22], [0x22, 0xFF, 0x22], [0x22, 0xED, 0xA0, 0x80, 0x22], [0x22, 0xE2, 0x82, 0x22]] {
            #expect(throws: JSONReadError.self) { try JSONReader.read(bytes) }
        }
    }

    @Test func nestingIsLimitedWithoutExhaustingTheStack() throws {
        let deep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        #expect(throws: JSONReadError.self) { try JSONReader.read(Array(deep.utf8)) }
        let allowed = String(repeating: "[", count: JSONReader.maxDepth) + String(repeating: "]", count: JSONReader.maxDepth)
        _ = try JSONReader.read(Array(allowed.utf8))
    }

    /// Every one-byte change of a real event: the reader never crashes, and whenever both it and
    /// JSONSerialization accept the bytes, they read the same value.
    @Test func mutatedEventsNeverCrashAndAgreeWithFoundation() throws {
        let original = TestEvents.load("verify.json")
        var generator = SeededGenerator(seed: 0x5EED)
        var accepted = 0
        var refused = 0
        for _ in 0..<3000 {
            var bytes = original
            let position = Int.random(in: 0..<bytes.count, using: &generator)
            bytes[position] =
                [
                    UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "{"), UInt8(ascii: "]"), UInt8(ascii: ","), 0x00, 0xC3, 0xFF,
                    UInt8(ascii: "e"), UInt8(ascii: "1"),
                ].randomElement(using: &generator) ?? 0
            if let node = try? JSONReader.read(bytes) {
                accepted += 1
                if let object = foundation(bytes) { #expect(same(node, object)) }
            } else {
                refused += 1
            }
        }
        #expect(accepted > 0 && refused > 0)
    }

    // MARK: Writer

    @Test func writtenStringsReadBackIdentically() throws {
        let texts = [
            "", "plain", "quote \" backslash \\ slash /", "</script>", "é中😀",
            String((0..<0x20).map { Character(Unicode.Scalar(UInt8($0))) }) + "\u{7F}",
        ]
        for text in texts {
            var writer = JSONWriter()
            writer.string(text)
            #expect(foundation(writer.bytes) as? String == text)
            #expect(try JSONReader.read(writer.bytes) == .string(text))
        }
    }

    @Test func logValuesAreJSONWithSortedKeys() {
        let value: JSONNode = ["b": .array([.string("x\"y"), ["z": .string("1"), "a": .string("2")]]), "a": .string("\n")]
        #expect(String(decoding: value.encoded(), as: UTF8.self) == #"{"a":"\n","b":["x\"y",{"a":"2","z":"1"}]}"#)
    }

    @Test func logTimestampIsUTCWithMilliseconds() throws {
        let stamp = JSONLogHandler.timestamp()
        #expect(stamp.wholeMatch(of: /\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z/) != nil)
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        let date = try #require(formatter.date(from: stamp))
        #expect(abs(date.timeIntervalSinceNow) < 5)
    }

    @Test func errorDocumentIsSortedJSON() {
        let bytes = FunctionRuntime.encode(ErrorDocument(errorType: "InvalidEvent", errorMessage: "bad \"x\""))
        #expect(String(decoding: bytes, as: UTF8.self) == #"{"errorMessage":"bad \"x\"","errorType":"InvalidEvent"}"#)
    }

    @Test func proxyResponseBytesAreStable() {
        let response = HTTPResponse(status: 403, headers: ["X-B": "2", "Content-Type": "text/plain", "A": "\"q\""], body: "line\nnext")
        let text = String(decoding: APIGatewayEvent.encode(response), as: UTF8.self)
        #expect(text == #"{"body":"line\nnext","headers":{"A":"\"q\"","Content-Type":"text/plain","X-B":"2"},"isBase64Encoded":false,"statusCode":403}"#)
    }
}

import Essentials
import Foundation
import KeyValueStore
import SafeJSON
import Testing

/// The product's JSON encoder and base64 codec (no Foundation in the bootstraps) against
/// Foundation's, which the tests may use.
@Suite struct EncodingTests {
    struct Inner: Codable, Equatable {
        var name: String
        var tags: [String]
        var score: Double?
    }

    struct Outer: Codable, Equatable {
        var id: Int64
        var small: UInt8
        var flag: Bool
        var ratio: Double
        var text: String
        var absent: String?
        var present: String?
        var inner: Inner
        var list: [Inner]
        var map: [String: Int]
        var nested: [[Int]]
        var value: AttributeValue
    }

    static let samples: [Outer] = [
        Outer(
            id: Int64.max, small: 255, flag: true, ratio: 0.1, text: "café / \"quoted\" \\ \n\t\u{1}", absent: nil, present: "here",
            inner: Inner(name: "a", tags: [], score: nil), list: [Inner(name: "b", tags: ["x", "y"], score: 1)], map: ["z": 1, "a": -2],
            nested: [[], [1, 2]], value: .m(["n": .n("1.5"), "b": .b([0, 255, 1]), "l": .l([.null, .bool(false), .ss(["s"])])])),
        Outer(
            id: Int64.min, small: 0, flag: false, ratio: 1e-05, text: "", absent: nil, present: nil, inner: Inner(name: "", tags: [""], score: 2.5e300),
            list: [], map: [:], nested: [], value: .s("")),
        Outer(
            id: 0, small: 7, flag: false, ratio: -123456.75, text: "emoji 🙂 and U+2028 \u{2028}", absent: "x", present: nil,
            inner: Inner(name: "n", tags: [], score: 100), list: [], map: ["k": 0], nested: [[0]], value: .bs([[1], []])),
    ]

    @Test(arguments: samples)
    func encodesAsFoundationDoes(_ value: Outer) throws {
        let foundation = JSONEncoder()
        foundation.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let theirs = try JSONSerialization.jsonObject(with: foundation.encode(value)) as? NSDictionary
        let ours = try JSONNodeEncoder.encode(value)
        #expect(try JSONSerialization.jsonObject(with: Data(ours)) as? NSDictionary == theirs)
        #expect(try JSONDecoder().decode(Outer.self, from: Data(ours)) == value)
        // Compact, members in key order at every level, nil optionals left out.
        let text = String(decoding: ours, as: UTF8.self)
        #expect(!text.contains("absent") || value.absent != nil)
        #expect(!text.contains(" :") && !text.contains(", "))
        #expect(text.hasPrefix(#"{"absent""#) || text.hasPrefix(#"{"flag""#))
    }

    @Test func numbersAreWrittenAsFoundationWritesThem() throws {
        for number in [0.0, 1.0, -1.0, 0.1, 1e-05, 2.5e300, 123456789.125, Double.leastNonzeroMagnitude, Double.greatestFiniteMagnitude] {
            let foundation = String(decoding: try JSONEncoder().encode([number]), as: UTF8.self)
            #expect(String(decoding: try JSONNodeEncoder.encode([number]), as: UTF8.self) == foundation)
        }
        #expect(throws: JSONNodeEncoder.Failure.self) { try JSONNodeEncoder.encode(["x": Double.nan]) }
        #expect(throws: JSONNodeEncoder.Failure.self) { try JSONNodeEncoder.encode([Double.infinity]) }
    }

    @Test func base64AgreesWithFoundationAndRFC4648() {
        let vectors = ["": "", "f": "Zg==", "fo": "Zm8=", "foo": "Zm9v", "foob": "Zm9vYg==", "fooba": "Zm9vYmE=", "foobar": "Zm9vYmFy"]
        for (plain, encoded) in vectors {
            #expect(Base64.encode(Array(plain.utf8)) == encoded)
            #expect(Base64.decode(encoded) == Array(plain.utf8))
        }
        var generator = SystemRandomNumberGenerator()
        for length in 0..<200 {
            let bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
            let encoded = Base64.encode(bytes)
            #expect(encoded == Data(bytes).base64EncodedString())
            #expect(Base64.decode(encoded) == bytes)
        }
        // Bits left over before the padding are ignored, as Foundation ignores them.
        for loose in ["Zh==", "Zm9="] { #expect(Base64.decode(loose).map { Data($0) } == Data(base64Encoded: loose)) }
        for invalid in ["Zg", "Zg=", "Z===", "Zm9v!", "Zm 9v", "=Zm9", "Zg==Zg==", "Zm8=\n"] {
            #expect(Base64.decode(invalid) == nil, "\(invalid)")
            #expect(Data(base64Encoded: invalid) == nil, "Foundation agrees on \(invalid)")
        }
    }
}

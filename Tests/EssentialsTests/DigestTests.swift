import Essentials
import Foundation
import TestSupport
import Testing

/// SHA-256 and HMAC-SHA-256: the published vectors (FIPS 180-4's examples, RFC 4231), and a
/// thousand random keys and messages checked against Python's hashlib and hmac, an independent
/// implementation (OpenSSL's, underneath).
@Suite struct DigestTests {
    static func bytes(hex: String) -> [UInt8] {
        var result: [UInt8] = []
        var index = hex.startIndex
        while index < hex.endIndex, let next = hex.index(index, offsetBy: 2, limitedBy: hex.endIndex) {
            result.append(UInt8(hex[index..<next], radix: 16) ?? 0)
            index = next
        }
        return result
    }

    @Test func nistExamples() {
        #expect(Hex.encode(SHA256.hash(Array("abc".utf8))) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(Hex.encode(SHA256.hash([UInt8]())) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(
            Hex.encode(SHA256.hash(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)))
                == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        // A million "a", given in uneven pieces.
        var hasher = SHA256()
        var given = 0
        var piece = 1
        while given < 1_000_000 {
            let count = min(piece, 1_000_000 - given)
            hasher.update(repeatElement(UInt8(ascii: "a"), count: count))
            given += count
            piece = piece * 7 % 997 + 1
        }
        #expect(Hex.encode(hasher.finalize()) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    @Test func rfc4231Vectors() {
        let cases: [(key: [UInt8], data: [UInt8], mac: String)] = [
            (Array(repeating: 0x0b, count: 20), Array("Hi There".utf8), "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
            (Array("Jefe".utf8), Array("what do ya want for nothing?".utf8), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
            (Array(repeating: 0xaa, count: 20), Array(repeating: 0xdd, count: 50), "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"),
            (
                Array(repeating: 0xaa, count: 131), Array("Test Using Larger Than Block-Size Key - Hash Key First".utf8),
                "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
            ),
        ]
        for (key, data, mac) in cases {
            #expect(Hex.encode(HMACSHA256.authenticationCode(for: data, key: key)) == mac)
        }
    }

    @Test func randomInputsAgreeWithPython() throws {
        var generator = SeededGenerator(seed: 20_261_127)
        // Every length around the block and padding boundaries, then random ones.
        let lengths = Array(0...130) + (0..<869).map { _ in Int.random(in: 0...3000, using: &generator) }
        let cases: [(key: [UInt8], data: [UInt8])] = lengths.map { length in
            let keyLength = Int.random(in: 0...150, using: &generator)
            return (
                (0..<keyLength).map { _ in UInt8.random(in: 0...255, using: &generator) },
                (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
            )
        }
        let input = cases.map { "\(Hex.encode($0.key)) \(Hex.encode($0.data))" }.joined(separator: "\n")
        let script = """
            import hashlib, hmac, sys
            for line in sys.stdin.read().split("\\n"):
                key, data = (bytes.fromhex(part) for part in line.split(" "))
                print(hashlib.sha256(data).hexdigest(), hmac.new(key, data, hashlib.sha256).hexdigest())
            """
        let python = Process()
        python.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        python.arguments = ["python3", "-c", script]
        let stdin = Pipe()
        let stdout = Pipe()
        python.standardInput = stdin
        python.standardOutput = stdout
        try python.run()
        // Written while Python reads, so neither pipe fills up.
        let writer = Thread {
            stdin.fileHandleForWriting.write(Data(input.utf8))
            try? stdin.fileHandleForWriting.close()
        }
        writer.start()
        let output = String(decoding: stdout.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        python.waitUntilExit()
        let lines = output.split(separator: "\n")
        try #require(lines.count == cases.count)
        for (line, (key, data)) in zip(lines, cases) {
            let expected = line.split(separator: " ").map(String.init)
            #expect(
                expected == [Hex.encode(SHA256.hash(data)), Hex.encode(HMACSHA256.authenticationCode(for: data, key: key))],
                "key \(key.count) bytes, data \(data.count) bytes")
        }
    }

    @Test func piecesHashAsTheWhole() {
        var generator = SeededGenerator(seed: 7)
        let data = (0..<777).map { _ in UInt8.random(in: 0...255, using: &generator) }
        let whole = SHA256.hash(data)
        for _ in 0..<50 {
            var hasher = SHA256()
            var rest = data[...]
            while !rest.isEmpty {
                let count = Int.random(in: 0...min(130, rest.count), using: &generator)
                hasher.update(rest.prefix(count))
                rest = rest.dropFirst(count)
            }
            #expect(hasher.finalize() == whole)
            // finalize leaves the hasher as it was.
            #expect(hasher.finalize() == whole)
        }
    }
}

import SafeJSON
import TestSupport

typealias FuzzRandom = SeededGenerator

/// Structure-aware mutations of JSON documents: the seed is read into a tree, one to three
/// values are replaced by hostile ones (numbers at and past every range, deep nesting, wrong
/// types, huge or odd strings), members are repeated or dropped, subtrees spliced from other
/// seeds; then, now and then, the bytes themselves are damaged.
struct Mutator {
    static let hostileNumbers = [
        "9223372036854776", "9223372036854775807", "9223372036854775808", "-9223372036854775809", "1e400", "-1e400",
        "1e300", "-1", "0", "-0", "1.5", "0.0000001", "99999999999999999999999999", "253402300800", "4294967296", "1e-400",
    ]
    static let hostileStrings = [
        "", "9223372036854776", "-1", "nan", "inf", "1e400", "\u{0}", "\u{FEFF}", "😀", "a\u{301}", "../../etc/passwd",
        "<script>alert(1)</script>", "' OR 1=1 --", "%00", "%ZZ", "http://169.254.169.254/", "0", "null", "\\", "\"",
        String(repeating: "x", count: 300), String(repeating: "é", count: 2000),
    ]

    var random: FuzzRandom
    let seeds: [JSONNode]

    init(seed: UInt64, seeds: [JSONNode]) {
        random = FuzzRandom(seed: seed)
        self.seeds = seeds
    }

    /// A mutated copy of one of the seeds, as bytes.
    mutating func next() -> [UInt8] {
        guard let seed = seeds.randomElement(using: &random) else { return Array("{}".utf8) }
        var node = seed
        for _ in 0..<Int.random(in: 1...3, using: &random) { node = mutate(node, depth: 0) }
        var bytes = JSONText.write(node)
        if random.chance(12) { damage(&bytes) }
        return bytes
    }

    /// A hostile value in place of any value.
    mutating func hostileValue() -> JSONNode {
        switch Int.random(in: 0..<10, using: &random) {
        case 0: return .number(Self.hostileNumbers.randomElement(using: &random) ?? "0")
        case 1: return .string(Self.hostileStrings.randomElement(using: &random) ?? "")
        case 2:
            let depth = [64, 127, 128, 129, 200, 510, 512, 513, 1000, 20_000].randomElement(using: &random) ?? 512
            var node = JSONNode.array([])
            for _ in 0..<depth { node = random.chance(50) ? .array([node]) : .object([(key: "a", value: node)]) }
            return node
        case 3: return .null
        case 4: return .bool(random.chance(50))
        case 5: return .object([])
        case 6: return .array((0..<Int.random(in: 0...40, using: &random)).map { _ in .number("1") })
        case 7: return .string(String(repeating: "A", count: [1000, 70_000, 300_000].randomElement(using: &random) ?? 1000))
        case 8:
            // A subtree of another seed, where it does not belong.
            guard let other = seeds.randomElement(using: &random) else { return .null }
            return randomSubtree(other)
        default: return .number(String(Int64.random(in: Int64.min...Int64.max, using: &random)))
        }
    }

    private mutating func randomSubtree(_ node: JSONNode) -> JSONNode {
        switch node {
        case .array(let elements) where !elements.isEmpty && random.chance(70):
            return randomSubtree(elements.randomElement(using: &random) ?? .null)
        case .object(let members) where !members.isEmpty && random.chance(70):
            return randomSubtree(members.randomElement(using: &random)?.value ?? .null)
        default:
            return node
        }
    }

    private mutating func mutate(_ node: JSONNode, depth: Int) -> JSONNode {
        // Walk down to a random place, mostly, then change it (never deeper than a seed goes:
        // a hostile deep value is replaced, not walked).
        if depth > 40 { return hostileValue() }
        switch node {
        case .object(var members) where !members.isEmpty && random.chance(80):
            let index = Int.random(in: 0..<members.count, using: &random)
            switch Int.random(in: 0..<10, using: &random) {
            case 0: members.remove(at: index)
            case 1: members.append((key: members[index].key, value: hostileValue()))
            case 2: members.insert((key: members[index].key, value: hostileValue()), at: 0)
            case 3: members[index].value = .array([members[index].value])
            default: members[index].value = mutate(members[index].value, depth: depth + 1)
            }
            return .object(members)
        case .array(var elements) where !elements.isEmpty && random.chance(80):
            let index = Int.random(in: 0..<elements.count, using: &random)
            switch Int.random(in: 0..<6, using: &random) {
            case 0: elements.remove(at: index)
            case 1: elements += Array(repeating: elements[index], count: Int.random(in: 1...60, using: &random))
            default: elements[index] = mutate(elements[index], depth: depth + 1)
            }
            return .array(elements)
        case .string(let text) where random.chance(40):
            // A string holding JSON (an SQS body) is mutated as JSON.
            if let inner = try? JSONReader.read(Array(text.utf8)), random.chance(70) {
                return .string(String(decoding: JSONText.write(mutate(inner, depth: depth + 1)), as: UTF8.self))
            }
            return .string(text + (Self.hostileStrings.randomElement(using: &random) ?? ""))
        default:
            return hostileValue()
        }
    }

    /// Byte damage: a flipped, inserted, dropped or truncated byte.
    private mutating func damage(_ bytes: inout [UInt8]) {
        guard !bytes.isEmpty else { return }
        let position = Int.random(in: 0..<bytes.count, using: &random)
        switch Int.random(in: 0..<4, using: &random) {
        case 0: bytes[position] ^= UInt8.random(in: 1...255, using: &random)
        case 1: bytes.insert([0x00, 0xFF, 0xC3, 0x22, 0x5C, 0x7B, 0x5B, 0x2C].randomElement(using: &random) ?? 0, at: position)
        case 2: bytes.remove(at: position)
        default: bytes.removeSubrange(position...)
        }
    }
}

/// Writes a JSON tree as it is: repeated member names and number texts are kept, so the
/// documents can be as hostile as the mutator made them.
enum JSONText {
    static func write(_ node: JSONNode) -> [UInt8] {
        var out: [UInt8] = []
        write(node, into: &out)
        return out
    }

    private static func write(_ node: JSONNode, into out: inout [UInt8]) {
        // Iterative for the deep values the mutator makes.
        enum Step { case node(JSONNode), raw(String) }
        var stack: [Step] = [.node(node)]
        while let step = stack.popLast() {
            switch step {
            case .raw(let text): out += text.utf8
            case .node(let node):
                switch node {
                case .null: out += "null".utf8
                case .bool(let flag): out += (flag ? "true" : "false").utf8
                case .number(let text): out += text.utf8
                case .string(let text): string(text, into: &out)
                case .array(let elements):
                    out.append(UInt8(ascii: "["))
                    stack.append(.raw("]"))
                    for (offset, element) in elements.enumerated().reversed() {
                        stack.append(.node(element))
                        if offset > 0 { stack.append(.raw(",")) }
                    }
                case .object(let members):
                    out.append(UInt8(ascii: "{"))
                    stack.append(.raw("}"))
                    for (offset, member) in members.enumerated().reversed() {
                        stack.append(.node(member.value))
                        var key: [UInt8] = []
                        string(member.key, into: &key)
                        stack.append(.raw(String(decoding: key, as: UTF8.self) + ":"))
                        if offset > 0 { stack.append(.raw(",")) }
                    }
                }
            }
        }
    }

    static func string(_ text: String, into out: inout [UInt8]) { JSONNode.writeString(text, into: &out) }
}

/// The one way the product turns an `Encodable` value into JSON, without Foundation: the value
/// becomes a `JSONNode`, written compact with object members in key order (as Foundation's
/// `JSONEncoder` with `.sortedKeys` and `.withoutEscapingSlashes` writes it). A nil optional is
/// left out, a non-finite number is an error.
public enum JSONNodeEncoder {
    public struct Failure: Error, Sendable, CustomStringConvertible {
        public let description: String
    }

    /// The JSON text of `value`.
    public static func encode<T: Encodable>(_ value: T) throws(Failure) -> [UInt8] {
        try node(value).encoded()
    }

    /// `value` as a JSON tree.
    public static func node<T: Encodable>(_ value: T) throws(Failure) -> JSONNode {
        let root = Slot()
        do {
            try value.encode(to: NodeEncoder(slot: root, codingPath: []))
        } catch let failure as Failure {
            throw failure
        } catch {
            throw Failure(description: "the value cannot be encoded: \(error)")
        }
        return root.node
    }

    /// Foundation's spelling of a finite Double: the shortest text that reads back the same,
    /// without a trailing ".0".
    static func number(_ value: Double, _ path: [any CodingKey]) throws(Failure) -> JSONNode {
        guard value.isFinite else {
            throw Failure(description: "a number at \(path.map(\.stringValue).joined(separator: ".")) is not finite")
        }
        var text = value.description
        if text.hasSuffix(".0") { text.removeLast(2) }
        return .number(text)
    }
}

/// Where a value is written: filled once by a leaf, or holding a container that is filled in
/// place (the references let nested containers write into their parent).
private final class Slot {
    enum Content {
        case empty
        case leaf(JSONNode)
        case array(ArrayBox)
        case object(ObjectBox)
    }
    var content: Content = .empty

    var node: JSONNode {
        switch content {
        case .empty: return .object([])
        case .leaf(let node): return node
        case .array(let box): return .array(box.slots.map(\.node))
        case .object(let box): return .object(box.keys.compactMap { key in box.slots[key].map { (key: key, value: $0.node) } })
        }
    }

    var objectBox: ObjectBox {
        if case .object(let box) = content { return box }
        let box = ObjectBox()
        content = .object(box)
        return box
    }

    var arrayBox: ArrayBox {
        if case .array(let box) = content { return box }
        let box = ArrayBox()
        content = .array(box)
        return box
    }
}

private final class ArrayBox {
    var slots: [Slot] = []

    func append() -> Slot {
        let slot = Slot()
        slots.append(slot)
        return slot
    }
}

private final class ObjectBox {
    var keys: [String] = []
    var slots: [String: Slot] = [:]

    func slot(_ key: String) -> Slot {
        if let slot = slots[key] { return slot }
        let slot = Slot()
        keys.append(key)
        slots[key] = slot
        return slot
    }
}

private func encodeValue<T: Encodable>(_ value: T, into slot: Slot, path: [any CodingKey]) throws {
    switch value {
    case let text as String: slot.content = .leaf(.string(text))
    case let flag as Bool: slot.content = .leaf(.bool(flag))
    case let number as Double: slot.content = .leaf(try JSONNodeEncoder.number(number, path))
    case let number as Float: slot.content = .leaf(try JSONNodeEncoder.number(Double(number), path))
    default: try value.encode(to: NodeEncoder(slot: slot, codingPath: path))
    }
}

private struct IndexKey: CodingKey {
    let intValue: Int?
    let stringValue: String

    init(_ index: Int) {
        intValue = index
        stringValue = String(index)
    }

    init?(intValue: Int) { self.init(intValue) }
    init?(stringValue: String) { nil }
}

private struct NodeEncoder: Encoder {
    let slot: Slot
    let codingPath: [any CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        KeyedEncodingContainer(KeyedContainer<Key>(box: slot.objectBox, codingPath: codingPath))
    }

    func unkeyedContainer() -> any UnkeyedEncodingContainer {
        UnkeyedContainer(box: slot.arrayBox, codingPath: codingPath)
    }

    func singleValueContainer() -> any SingleValueEncodingContainer {
        SingleContainer(slot: slot, codingPath: codingPath)
    }
}

private struct KeyedContainer<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let box: ObjectBox
    let codingPath: [any CodingKey]

    private func set(_ node: JSONNode, _ key: Key) { box.slot(key.stringValue).content = .leaf(node) }

    mutating func encodeNil(forKey key: Key) throws { set(.null, key) }
    mutating func encode(_ value: Bool, forKey key: Key) throws { set(.bool(value), key) }
    mutating func encode(_ value: String, forKey key: Key) throws { set(.string(value), key) }
    mutating func encode(_ value: Double, forKey key: Key) throws { set(try JSONNodeEncoder.number(value, codingPath + [key]), key) }
    mutating func encode(_ value: Float, forKey key: Key) throws { set(try JSONNodeEncoder.number(Double(value), codingPath + [key]), key) }
    mutating func encode(_ value: Int, forKey key: Key) throws { set(.number(String(value)), key) }
    mutating func encode(_ value: Int8, forKey key: Key) throws { set(.number(String(value)), key) }
    mutating func encode(_ value: Int16, forKey key: Key) throws { set(.number(String(value)), key) }
    mutating func encode(_ value: Int32, forKey key: Key) throws { set(.number(String(value)), key) }
    mutating func encode(_ value: Int64, forKey key: Key) throws { set(.number(String(value)), key) }
    mutating func encode(_ value: UInt, forKey key: Key) throws { set(.number(String(value)), key) }
    mutating func encode(_ value: UInt8, forKey key: Key) throws { set(.number(String(value)), key) }
    mutating func encode(_ value: UInt16, forKey key: Key) throws { set(.number(String(value)), key) }
    mutating func encode(_ value: UInt32, forKey key: Key) throws { set(.number(String(value)), key) }
    mutating func encode(_ value: UInt64, forKey key: Key) throws { set(.number(String(value)), key) }

    mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws {
        try encodeValue(value, into: box.slot(key.stringValue), path: codingPath + [key])
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type, forKey key: Key) -> KeyedEncodingContainer<NestedKey> {
        KeyedEncodingContainer(KeyedContainer<NestedKey>(box: box.slot(key.stringValue).objectBox, codingPath: codingPath + [key]))
    }

    mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
        UnkeyedContainer(box: box.slot(key.stringValue).arrayBox, codingPath: codingPath + [key])
    }

    mutating func superEncoder() -> any Encoder { NodeEncoder(slot: box.slot("super"), codingPath: codingPath) }
    mutating func superEncoder(forKey key: Key) -> any Encoder { NodeEncoder(slot: box.slot(key.stringValue), codingPath: codingPath + [key]) }
}

private struct UnkeyedContainer: UnkeyedEncodingContainer {
    let box: ArrayBox
    let codingPath: [any CodingKey]
    var count: Int { box.slots.count }

    private func add(_ node: JSONNode) { box.append().content = .leaf(node) }
    private var nextPath: [any CodingKey] { codingPath + [IndexKey(box.slots.count)] }

    mutating func encodeNil() throws { add(.null) }
    mutating func encode(_ value: Bool) throws { add(.bool(value)) }
    mutating func encode(_ value: String) throws { add(.string(value)) }
    mutating func encode(_ value: Double) throws { add(try JSONNodeEncoder.number(value, nextPath)) }
    mutating func encode(_ value: Float) throws { add(try JSONNodeEncoder.number(Double(value), nextPath)) }
    mutating func encode(_ value: Int) throws { add(.number(String(value))) }
    mutating func encode(_ value: Int8) throws { add(.number(String(value))) }
    mutating func encode(_ value: Int16) throws { add(.number(String(value))) }
    mutating func encode(_ value: Int32) throws { add(.number(String(value))) }
    mutating func encode(_ value: Int64) throws { add(.number(String(value))) }
    mutating func encode(_ value: UInt) throws { add(.number(String(value))) }
    mutating func encode(_ value: UInt8) throws { add(.number(String(value))) }
    mutating func encode(_ value: UInt16) throws { add(.number(String(value))) }
    mutating func encode(_ value: UInt32) throws { add(.number(String(value))) }
    mutating func encode(_ value: UInt64) throws { add(.number(String(value))) }

    mutating func encode<T: Encodable>(_ value: T) throws {
        let path = nextPath
        try encodeValue(value, into: box.append(), path: path)
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type) -> KeyedEncodingContainer<NestedKey> {
        let path = nextPath
        return KeyedEncodingContainer(KeyedContainer<NestedKey>(box: box.append().objectBox, codingPath: path))
    }

    mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer {
        let path = nextPath
        return UnkeyedContainer(box: box.append().arrayBox, codingPath: path)
    }

    mutating func superEncoder() -> any Encoder {
        let path = nextPath
        return NodeEncoder(slot: box.append(), codingPath: path)
    }
}

private struct SingleContainer: SingleValueEncodingContainer {
    let slot: Slot
    let codingPath: [any CodingKey]

    private func set(_ node: JSONNode) { slot.content = .leaf(node) }

    mutating func encodeNil() throws { set(.null) }
    mutating func encode(_ value: Bool) throws { set(.bool(value)) }
    mutating func encode(_ value: String) throws { set(.string(value)) }
    mutating func encode(_ value: Double) throws { set(try JSONNodeEncoder.number(value, codingPath)) }
    mutating func encode(_ value: Float) throws { set(try JSONNodeEncoder.number(Double(value), codingPath)) }
    mutating func encode(_ value: Int) throws { set(.number(String(value))) }
    mutating func encode(_ value: Int8) throws { set(.number(String(value))) }
    mutating func encode(_ value: Int16) throws { set(.number(String(value))) }
    mutating func encode(_ value: Int32) throws { set(.number(String(value))) }
    mutating func encode(_ value: Int64) throws { set(.number(String(value))) }
    mutating func encode(_ value: UInt) throws { set(.number(String(value))) }
    mutating func encode(_ value: UInt8) throws { set(.number(String(value))) }
    mutating func encode(_ value: UInt16) throws { set(.number(String(value))) }
    mutating func encode(_ value: UInt32) throws { set(.number(String(value))) }
    mutating func encode(_ value: UInt64) throws { set(.number(String(value))) }

    mutating func encode<T: Encodable>(_ value: T) throws { try encodeValue(value, into: slot, path: codingPath) }
}

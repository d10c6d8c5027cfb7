/// The one guarded entry point for typed JSON: the bytes are read by `JSONReader` under
/// limits (size, depth, repeated names, UTF-8) and the value is then decoded from the tree,
/// never by Foundation's `JSONDecoder`. Numbers are converted with range checks: a number
/// that does not fit the field's type is a decoding error, never a trap.
public enum SafeJSON {
    public static func decode<T: Decodable>(_ type: T.Type, from bytes: [UInt8], limits: JSONLimits = .standard) throws -> T {
        try decode(type, from: JSONReader.read(bytes, limits: limits))
    }

    public static func decode<T: Decodable>(_ type: T.Type, from node: JSONNode) throws -> T {
        try T(from: NodeDecoder(node: node, codingPath: []))
    }
}

extension JSONNode {
    /// The number as a whole number, if it is one and fits (`1e3` and `1000.0` are 1000).
    public var exactInt64: Int64? {
        guard case .number(let text) = self else { return nil }
        if let value = Int64(text) { return value }
        guard let value = Double(text), value.isFinite, value.rounded() == value,
            value >= -9_223_372_036_854_775_808.0, value < 9_223_372_036_854_775_808.0
        else { return nil }
        return Int64(value)
    }

    /// The number as a finite double (`1e400` is out of range, not infinity).
    public var finiteDouble: Double? {
        guard case .number(let text) = self, let value = Double(text), value.isFinite else { return nil }
        return value
    }
}

private struct NodeDecoder: Decoder {
    let node: JSONNode
    let codingPath: [any CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        guard case .object(let members) = node else { throw mismatch([String: JSONNode].self, node, codingPath) }
        var values: [String: JSONNode] = [:]
        values.reserveCapacity(members.count)
        for member in members { values[member.key] = member.value }
        return KeyedDecodingContainer(KeyedNodeContainer<Key>(values: values, codingPath: codingPath))
    }

    func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
        guard case .array(let elements) = node else { throw mismatch([JSONNode].self, node, codingPath) }
        return UnkeyedNodeContainer(elements: elements, codingPath: codingPath)
    }

    func singleValueContainer() throws -> any SingleValueDecodingContainer {
        SingleNodeContainer(node: node, codingPath: codingPath)
    }
}

private func mismatch(_ type: Any.Type, _ node: JSONNode, _ path: [any CodingKey]) -> DecodingError {
    .typeMismatch(type, DecodingError.Context(codingPath: path, debugDescription: "expected \(type), found \(node.kind)"))
}

private func outOfRange(_ type: Any.Type, _ path: [any CodingKey]) -> DecodingError {
    .dataCorrupted(DecodingError.Context(codingPath: path, debugDescription: "the number does not fit \(type)"))
}

/// Decodes a value of a primitive or Decodable type from one node.
private func unbox<T: Decodable>(_ type: T.Type, _ node: JSONNode, _ path: [any CodingKey]) throws -> T {
    let value: Any
    switch type {
    case is Bool.Type:
        guard case .bool(let flag) = node else { throw mismatch(type, node, path) }
        value = flag
    case is String.Type:
        guard case .string(let text) = node else { throw mismatch(type, node, path) }
        value = text
    case is Double.Type:
        guard case .number = node else { throw mismatch(type, node, path) }
        guard let double = node.finiteDouble else { throw outOfRange(type, path) }
        value = double
    case is Float.Type:
        guard case .number = node else { throw mismatch(type, node, path) }
        guard let double = node.finiteDouble, Float(double).isFinite else { throw outOfRange(type, path) }
        value = Float(double)
    default:
        return try T(from: NodeDecoder(node: node, codingPath: path))
    }
    guard let typed = value as? T else { throw mismatch(type, node, path) }
    return typed
}

private func integer<I: FixedWidthInteger>(_ type: I.Type, _ node: JSONNode, _ path: [any CodingKey]) throws -> I {
    guard case .number(let text) = node else { throw mismatch(type, node, path) }
    if let value = I(text) { return value }
    guard let wide = node.exactInt64, let value = I(exactly: wide) else { throw outOfRange(type, path) }
    return value
}

private struct IndexKey: CodingKey {
    let intValue: Int?
    let stringValue: String
    init(_ index: Int) { intValue = index; stringValue = "Index \(index)" }
    init?(stringValue: String) { return nil }
    init?(intValue: Int) { self.init(intValue) }
}

private struct KeyedNodeContainer<Key: CodingKey>: KeyedDecodingContainerProtocol {
    let values: [String: JSONNode]
    let codingPath: [any CodingKey]

    var allKeys: [Key] { values.keys.compactMap { Key(stringValue: $0) } }
    func contains(_ key: Key) -> Bool { values[key.stringValue] != nil }

    private func node(_ key: Key) throws -> JSONNode {
        guard let node = values[key.stringValue] else {
            throw DecodingError.keyNotFound(key, DecodingError.Context(codingPath: codingPath, debugDescription: "no member \(key.stringValue)"))
        }
        return node
    }

    func decodeNil(forKey key: Key) throws -> Bool { try node(key) == .null }
    func decode(_ type: Bool.Type, forKey key: Key) throws -> Bool { try unbox(type, node(key), codingPath + [key]) }
    func decode(_ type: String.Type, forKey key: Key) throws -> String { try unbox(type, node(key), codingPath + [key]) }
    func decode(_ type: Double.Type, forKey key: Key) throws -> Double { try unbox(type, node(key), codingPath + [key]) }
    func decode(_ type: Float.Type, forKey key: Key) throws -> Float { try unbox(type, node(key), codingPath + [key]) }
    func decode(_ type: Int.Type, forKey key: Key) throws -> Int { try integer(type, node(key), codingPath + [key]) }
    func decode(_ type: Int8.Type, forKey key: Key) throws -> Int8 { try integer(type, node(key), codingPath + [key]) }
    func decode(_ type: Int16.Type, forKey key: Key) throws -> Int16 { try integer(type, node(key), codingPath + [key]) }
    func decode(_ type: Int32.Type, forKey key: Key) throws -> Int32 { try integer(type, node(key), codingPath + [key]) }
    func decode(_ type: Int64.Type, forKey key: Key) throws -> Int64 { try integer(type, node(key), codingPath + [key]) }
    func decode(_ type: UInt.Type, forKey key: Key) throws -> UInt { try integer(type, node(key), codingPath + [key]) }
    func decode(_ type: UInt8.Type, forKey key: Key) throws -> UInt8 { try integer(type, node(key), codingPath + [key]) }
    func decode(_ type: UInt16.Type, forKey key: Key) throws -> UInt16 { try integer(type, node(key), codingPath + [key]) }
    func decode(_ type: UInt32.Type, forKey key: Key) throws -> UInt32 { try integer(type, node(key), codingPath + [key]) }
    func decode(_ type: UInt64.Type, forKey key: Key) throws -> UInt64 { try integer(type, node(key), codingPath + [key]) }
    func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T { try unbox(type, node(key), codingPath + [key]) }

    func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key) throws -> KeyedDecodingContainer<NestedKey> {
        try NodeDecoder(node: node(key), codingPath: codingPath + [key]).container(keyedBy: type)
    }

    func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer {
        try NodeDecoder(node: node(key), codingPath: codingPath + [key]).unkeyedContainer()
    }

    func superDecoder() throws -> any Decoder {
        NodeDecoder(node: values["super"] ?? .null, codingPath: codingPath)
    }

    func superDecoder(forKey key: Key) throws -> any Decoder {
        NodeDecoder(node: values[key.stringValue] ?? .null, codingPath: codingPath + [key])
    }
}

private struct UnkeyedNodeContainer: UnkeyedDecodingContainer {
    let elements: [JSONNode]
    let codingPath: [any CodingKey]
    private(set) var currentIndex = 0

    init(elements: [JSONNode], codingPath: [any CodingKey]) {
        self.elements = elements
        self.codingPath = codingPath
    }

    var count: Int? { elements.count }
    var isAtEnd: Bool { currentIndex >= elements.count }

    private mutating func next(_ type: Any.Type) throws -> (JSONNode, [any CodingKey]) {
        guard currentIndex < elements.count else {
            throw DecodingError.valueNotFound(type, DecodingError.Context(codingPath: codingPath, debugDescription: "the array has no more elements"))
        }
        defer { currentIndex += 1 }
        return (elements[currentIndex], codingPath + [IndexKey(currentIndex)])
    }

    mutating func decodeNil() throws -> Bool {
        guard currentIndex < elements.count, elements[currentIndex] == .null else { return false }
        currentIndex += 1
        return true
    }

    mutating func decode(_ type: Bool.Type) throws -> Bool { let (node, path) = try next(type); return try unbox(type, node, path) }
    mutating func decode(_ type: String.Type) throws -> String { let (node, path) = try next(type); return try unbox(type, node, path) }
    mutating func decode(_ type: Double.Type) throws -> Double { let (node, path) = try next(type); return try unbox(type, node, path) }
    mutating func decode(_ type: Float.Type) throws -> Float { let (node, path) = try next(type); return try unbox(type, node, path) }
    mutating func decode(_ type: Int.Type) throws -> Int { let (node, path) = try next(type); return try integer(type, node, path) }
    mutating func decode(_ type: Int8.Type) throws -> Int8 { let (node, path) = try next(type); return try integer(type, node, path) }
    mutating func decode(_ type: Int16.Type) throws -> Int16 { let (node, path) = try next(type); return try integer(type, node, path) }
    mutating func decode(_ type: Int32.Type) throws -> Int32 { let (node, path) = try next(type); return try integer(type, node, path) }
    mutating func decode(_ type: Int64.Type) throws -> Int64 { let (node, path) = try next(type); return try integer(type, node, path) }
    mutating func decode(_ type: UInt.Type) throws -> UInt { let (node, path) = try next(type); return try integer(type, node, path) }
    mutating func decode(_ type: UInt8.Type) throws -> UInt8 { let (node, path) = try next(type); return try integer(type, node, path) }
    mutating func decode(_ type: UInt16.Type) throws -> UInt16 { let (node, path) = try next(type); return try integer(type, node, path) }
    mutating func decode(_ type: UInt32.Type) throws -> UInt32 { let (node, path) = try next(type); return try integer(type, node, path) }
    mutating func decode(_ type: UInt64.Type) throws -> UInt64 { let (node, path) = try next(type); return try integer(type, node, path) }
    mutating func decode<T: Decodable>(_ type: T.Type) throws -> T { let (node, path) = try next(type); return try unbox(type, node, path) }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) throws -> KeyedDecodingContainer<NestedKey> {
        let (node, path) = try next([String: JSONNode].self)
        return try NodeDecoder(node: node, codingPath: path).container(keyedBy: type)
    }

    mutating func nestedUnkeyedContainer() throws -> any UnkeyedDecodingContainer {
        let (node, path) = try next([JSONNode].self)
        return try NodeDecoder(node: node, codingPath: path).unkeyedContainer()
    }

    mutating func superDecoder() throws -> any Decoder {
        let (node, path) = try next(JSONNode.self)
        return NodeDecoder(node: node, codingPath: path)
    }
}

private struct SingleNodeContainer: SingleValueDecodingContainer {
    let node: JSONNode
    let codingPath: [any CodingKey]

    func decodeNil() -> Bool { node == .null }
    func decode(_ type: Bool.Type) throws -> Bool { try unbox(type, node, codingPath) }
    func decode(_ type: String.Type) throws -> String { try unbox(type, node, codingPath) }
    func decode(_ type: Double.Type) throws -> Double { try unbox(type, node, codingPath) }
    func decode(_ type: Float.Type) throws -> Float { try unbox(type, node, codingPath) }
    func decode(_ type: Int.Type) throws -> Int { try integer(type, node, codingPath) }
    func decode(_ type: Int8.Type) throws -> Int8 { try integer(type, node, codingPath) }
    func decode(_ type: Int16.Type) throws -> Int16 { try integer(type, node, codingPath) }
    func decode(_ type: Int32.Type) throws -> Int32 { try integer(type, node, codingPath) }
    func decode(_ type: Int64.Type) throws -> Int64 { try integer(type, node, codingPath) }
    func decode(_ type: UInt.Type) throws -> UInt { try integer(type, node, codingPath) }
    func decode(_ type: UInt8.Type) throws -> UInt8 { try integer(type, node, codingPath) }
    func decode(_ type: UInt16.Type) throws -> UInt16 { try integer(type, node, codingPath) }
    func decode(_ type: UInt32.Type) throws -> UInt32 { try integer(type, node, codingPath) }
    func decode(_ type: UInt64.Type) throws -> UInt64 { try integer(type, node, codingPath) }
    func decode<T: Decodable>(_ type: T.Type) throws -> T { try unbox(type, node, codingPath) }
}

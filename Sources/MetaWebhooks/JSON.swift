@_exported import SafeJSON

/// The product's one JSON value model, `SafeJSON`'s `JSONNode`, under the name the core
/// has always used: read from outside through the guarded reader, read field by field,
/// written with sorted keys.
public typealias JSON = JSONNode

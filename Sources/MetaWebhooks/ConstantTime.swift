/// Byte comparison whose running time does not depend on where the inputs differ, for
/// secrets (verify token, signatures, signed OAuth state). Only the length can leak.
public func constantTimeEquals<A: Collection<UInt8>, B: Collection<UInt8>>(_ a: A, _ b: B) -> Bool {
    guard a.count == b.count else { return false }
    var difference: UInt8 = 0
    for (x, y) in zip(a, b) { difference |= x ^ y }
    return difference == 0
}

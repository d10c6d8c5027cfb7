import Crypto
import HTTPTransport

enum HMACSHA256 {
    static func sign<D: Collection<UInt8>>(_ data: D, key: [UInt8]) -> [UInt8] {
        Array(HMAC<SHA256>.authenticationCode(for: Array(data), using: SymmetricKey(data: key)))
    }

    static func hex(_ data: some Collection<UInt8>, key: String) -> String {
        Hex.encode(sign(data, key: Array(key.utf8)))
    }
}

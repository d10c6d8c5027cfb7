#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// An IPv4 (4 bytes) or IPv6 (16 bytes) address, and what kind of network it belongs to: the
/// ground of the rule that keeps a URL set by a tenant from reaching our own machine or network
/// (server-side request forgery).
public struct IPAddress: Sendable, Hashable, CustomStringConvertible {
    public let bytes: [UInt8]

    /// From its text (`192.0.2.1`, `2001:db8::1`, `::ffff:10.0.0.1`); nil if it is not one.
    public init?(_ text: String) {
        var v4 = in_addr()
        var v6 = in6_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            bytes = withUnsafeBytes(of: &v4) { Array($0) }
        } else if inet_pton(AF_INET6, text, &v6) == 1 {
            bytes = withUnsafeBytes(of: &v6) { Array($0) }
        } else {
            return nil
        }
    }

    public init?(bytes: [UInt8]) {
        guard bytes.count == 4 || bytes.count == 16 else { return nil }
        self.bytes = bytes
    }

    public var description: String {
        if bytes.count == 4 { return bytes.map(String.init).joined(separator: ".") }
        return stride(from: 0, to: 16, by: 2).map { String(UInt16(bytes[$0]) << 8 | UInt16(bytes[$0 + 1]), radix: 16) }.joined(separator: ":")
    }

    /// The IPv4 address an IPv6 one carries (`::ffff:a.b.c.d` mapped, `::a.b.c.d` compatible,
    /// `64:ff9b::a.b.c.d` NAT64), else itself.
    var unwrapped: IPAddress {
        guard bytes.count == 16 else { return self }
        let tail = Array(bytes[12..<16])
        let head = bytes[0..<12]
        if head.elementsEqual([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF]) || (head.allSatisfy { $0 == 0 } && tail != [0, 0, 0, 0] && tail != [0, 0, 0, 1]) {
            return IPAddress(bytes: tail) ?? self
        }
        if head.elementsEqual([0x00, 0x64, 0xFF, 0x9B, 0, 0, 0, 0, 0, 0, 0, 0]) { return IPAddress(bytes: tail) ?? self }
        return self
    }

    public enum Scope: String, Sendable, Equatable {
        /// This machine: 127.0.0.0/8, ::1.
        case loopback
        /// 10/8, 172.16/12, 192.168/16, 100.64/10 (shared), fc00::/7 (unique local).
        case `private`
        /// 169.254/16 (where cloud metadata services answer), fe80::/10.
        case linkLocal = "link-local"
        /// 0/8, ::, multicast, broadcast, reserved and documentation ranges: never a server.
        case unusable
        case `public`
    }

    public var scope: Scope {
        let address = unwrapped
        let b = address.bytes
        if b.count == 4 {
            switch (b[0], b[1]) {
            case (127, _): return .loopback
            case (10, _), (172, 16...31), (192, 168): return .private
            case (100, 64...127): return .private
            case (169, 254): return .linkLocal
            case (0, _), (224...255, _): return .unusable
            case (192, 0) where b[2] == 0 || b[2] == 2: return .unusable
            case (198, 18...19): return .unusable
            case (198, 51) where b[2] == 100: return .unusable
            case (203, 0) where b[2] == 113: return .unusable
            default: return .public
            }
        }
        if b.allSatisfy({ $0 == 0 }) { return .unusable }
        if b[0..<15].allSatisfy({ $0 == 0 }) && b[15] == 1 { return .loopback }
        if b[0] & 0xFE == 0xFC { return .private }
        if b[0] == 0xFE && b[1] & 0xC0 == 0x80 { return .linkLocal }
        if b[0] == 0xFF { return .unusable }
        if b[0] == 0x20 && b[1] == 0x01 && b[2] == 0x0D && b[3] == 0xB8 { return .unusable }
        return .public
    }

    /// The addresses `host` resolves to (the system's resolver: /etc/hosts, then DNS); empty
    /// when it resolves to none. Blocks while it asks.
    public static func resolve(_ host: String) -> [IPAddress] {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = System.streamSocket
        var list: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, nil, &hints, &list) == 0, let first = list else { return [] }
        defer { freeaddrinfo(first) }
        var found: [IPAddress] = []
        var cursor: UnsafeMutablePointer<addrinfo>? = first
        while let entry = cursor {
            if let address = entry.pointee.ai_addr {
                switch Int32(address.pointee.sa_family) {
                case AF_INET:
                    address.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { v4 in
                        var raw = v4.pointee.sin_addr
                        if let ip = IPAddress(bytes: withUnsafeBytes(of: &raw) { Array($0) }) { found.append(ip) }
                    }
                case AF_INET6:
                    address.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { v6 in
                        var raw = v6.pointee.sin6_addr
                        if let ip = IPAddress(bytes: withUnsafeBytes(of: &raw) { Array($0) }) { found.append(ip) }
                    }
                default: break
                }
            }
            cursor = entry.pointee.ai_next
        }
        return Array(Set(found)).sorted { $0.description < $1.description }
    }
}

/// Which peers a request may reach: every address (the deployment's own services), or only
/// public ones (a URL a tenant set), with loopback as the one exception in local mode.
public enum PeerRule: Sendable, Equatable {
    case publicOnly
    case publicOrLoopback

    public func allows(_ address: IPAddress) -> Bool {
        switch address.scope {
        case .public: true
        case .loopback: self == .publicOrLoopback
        case .private, .linkLocal, .unusable: false
        }
    }
}

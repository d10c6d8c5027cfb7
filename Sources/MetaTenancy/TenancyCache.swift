import Essentials
import MetaWebhooks
import Synchronization

/// What a warm `receive` or `process` execution read of the tenancy tables lately: an
/// account's route and a location's connection, each kept `seconds` (5 by default), so a
/// burst of one business's messages reads them once instead of once per message.
///
/// The rule: a connection changed elsewhere (connected, disconnected, deauthorized, a token
/// renewed by `refresh`, marked for reconnection by another execution) is seen by a warm
/// execution within `seconds`; a change made through the same directory (a code 190 met here)
/// empties the cache at once. Only what exists is kept: an account that routes nowhere, or a
/// location without a connection, is read again each time, so a new connection is answered
/// from its first message.
public final class TenancyCache: Sendable {
    public let seconds: Int64
    private let clock: WallClock
    private let routes = Mutex<[String: (TenantRoute, until: Int64)]>([:])
    private let connections = Mutex<[Tenant: (TenantCredentials, until: Int64)]>([:])

    public init(seconds: Int64 = 5, clock: WallClock = .system) {
        self.seconds = seconds
        self.clock = clock
    }

    func route(_ identifier: String) -> TenantRoute? { Self.live(identifier, in: routes, now: clock.epochSeconds()) }
    func keep(_ route: TenantRoute, for identifier: String) { Self.keep(route, for: identifier, in: routes, until: clock.epochSeconds() + seconds) }

    func credentials(_ tenant: Tenant) -> TenantCredentials? { Self.live(tenant, in: connections, now: clock.epochSeconds()) }
    func keep(_ credentials: TenantCredentials, for tenant: Tenant) {
        Self.keep(credentials, for: tenant, in: connections, until: clock.epochSeconds() + seconds)
    }

    /// Forgets everything (a write through the directory).
    public func clear() {
        routes.withLock { $0.removeAll() }
        connections.withLock { $0.removeAll() }
    }

    private static func live<Key: Hashable & Sendable, Value: Sendable>(_ key: Key, in map: borrowing Mutex<[Key: (Value, until: Int64)]>, now: Int64) -> Value?
    {
        map.withLock { entries in
            guard let (value, until) = entries[key], until > now else { return nil }
            return value
        }
    }

    /// At most 10,000 entries: past that the map starts afresh (a flood of accounts never
    /// grows an execution's memory).
    private static func keep<Key: Hashable & Sendable, Value: Sendable>(
        _ value: Value, for key: Key, in map: borrowing Mutex<[Key: (Value, until: Int64)]>, until: Int64
    ) {
        map.withLock { entries in
            if entries.count > 10_000 { entries.removeAll() }
            entries[key] = (value, until)
        }
    }
}

import Essentials
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
    private let routes = Mutex<[String: (TenantRoute, Int64)]>([:])
    private let connections = Mutex<[Tenant: (TenantCredentials, Int64)]>([:])

    public init(seconds: Int64 = 5, clock: WallClock = .system) {
        self.seconds = seconds
        self.clock = clock
    }

    func route(_ identifier: String) -> TenantRoute? {
        let now = clock.epochSeconds()
        return routes.withLock { routes in
            guard let (route, until) = routes[identifier], until > now else { return nil }
            return route
        }
    }

    func keep(_ route: TenantRoute, for identifier: String) {
        let until = clock.epochSeconds() + seconds
        routes.withLock { routes in
            if routes.count > 10_000 { routes.removeAll() }
            routes[identifier] = (route, until)
        }
    }

    func credentials(_ tenant: Tenant) -> TenantCredentials? {
        let now = clock.epochSeconds()
        return connections.withLock { connections in
            guard let (credentials, until) = connections[tenant], until > now else { return nil }
            return credentials
        }
    }

    func keep(_ credentials: TenantCredentials, for tenant: Tenant) {
        let until = clock.epochSeconds() + seconds
        connections.withLock { connections in
            if connections.count > 10_000 { connections.removeAll() }
            connections[tenant] = (credentials, until)
        }
    }

    /// Forgets everything (a write through the directory).
    public func clear() {
        routes.withLock { $0.removeAll() }
        connections.withLock { $0.removeAll() }
    }
}

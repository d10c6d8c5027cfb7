import MetaWebhooks

/// What the Graph client needs of a connection to act for it: whose it is, whether it may
/// act, and on each platform the account that speaks and its token. The core's connection
/// (`TenantCredentials`) is one; the client never reads or writes tenancy itself (a token Meta
/// says is expired comes back as an outcome, `SendError.tokenExpired`, for the caller to record).
public protocol GraphConnection: Sendable {
    var businessId: String { get }
    var isActive: Bool { get }
    var inactiveReason: String? { get }
    /// Connected through Instagram Login: the account's own token, on Instagram's host.
    var usesInstagramLogin: Bool { get }
    /// The account that sends on `platform` (Page, Instagram account, WhatsApp number), or nil.
    func sendingAccount(for platform: Platform) -> String?
    /// The token that speaks on `platform`, or nil; never logged.
    func token(for platform: Platform) -> String?
}

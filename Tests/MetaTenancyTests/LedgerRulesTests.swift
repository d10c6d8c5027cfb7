import KeyValueStore
import MetaTenancy
import MetaWebhooks
import TestSupport
import Testing

/// Tenancy's rules over the key-value port alone (a file store in a temporary folder, a clock
/// the test moves): a message is answered by one claimer, a reply that may have gone out
/// follows the in-doubt rule once its lease runs out, a thing spent once stays spent, and a
/// pause ends when its time does.
@Suite struct LedgerRulesTests {
    struct World {
        let clock: TestClock
        let store: any KeyValueStore
        let tables: Tables
    }

    static func world() throws -> World {
        let clock = TestClock()
        let tables = Tables(
            credentials: Stores.unique("credentials"), identifiers: Stores.unique("identifiers"),
            processedMessages: Stores.unique("processed"), conversations: Stores.unique("conversations"))
        let store = try FileStore(directory: Stores.temporaryDirectory(), tables: tables.all, now: clock.epochSeconds)
        return World(clock: clock, store: store, tables: tables)
    }

    static func ledger(_ world: World, inDoubt: MessageLedger.InDoubt) -> MessageLedger {
        MessageLedger(store: world.store, table: world.tables.processedMessages, clock: world.clock.clock, leaseSeconds: 60, inDoubt: inDoubt)
    }

    @Test func aMessageHasOneClaimerUntilItsLeaseRunsOut() async throws {
        let world = try Self.world()
        let ledger = Self.ledger(world, inDoubt: .doNotSendAgain)
        #expect(try await ledger.claim("m_1", businessId: "B1", owner: "first", as: .answering) == .claimed)
        #expect(try await ledger.claim("m_1", businessId: "B1", owner: "second", as: .answering) == .held(.answering))
        // The first claimer died before sending anything: after its lease another takes over.
        world.clock.advance(61)
        #expect(try await ledger.claim("m_1", businessId: "B1", owner: "second", as: .answering) == .claimed)
        #expect(try await ledger.finish("m_1", owner: "first", status: .answered) == false)
        #expect(try await ledger.finish("m_1", owner: "second", status: .answered))
        #expect(try await ledger.claim("m_1", businessId: "B1", owner: "third", as: .answering) == .taken(.answered))
    }

    @Test func aReplyThatMayHaveGoneOutFollowsTheInDoubtRuleOnce() async throws {
        let world = try Self.world()
        let careful = Self.ledger(world, inDoubt: .doNotSendAgain)
        #expect(try await careful.claim("m_doubt", businessId: "B1", owner: "first", as: .answering) == .claimed)
        #expect(try await careful.markSending([("m_doubt", "first")]) == [true])
        #expect(try await careful.claim("m_doubt", businessId: "B1", owner: "second", as: .answering) == .held(.sending))
        world.clock.advance(61)
        #expect(try await careful.claim("m_doubt", businessId: "B1", owner: "second", as: .answering) == .settledInDoubt)
        #expect(try await careful.status(of: "m_doubt") == .unconfirmed)
        #expect(try await careful.claim("m_doubt", businessId: "B1", owner: "third", as: .answering) == .taken(.unconfirmed))

        let eager = Self.ledger(world, inDoubt: .sendAgain)
        #expect(try await eager.claim("m_again", businessId: "B1", owner: "first", as: .answering) == .claimed)
        #expect(try await eager.markSending([("m_again", "first")]) == [true])
        world.clock.advance(61)
        #expect(try await eager.claim("m_again", businessId: "B1", owner: "second", as: .answering) == .claimedInDoubt)
        #expect(try await eager.claim("m_again", businessId: "B1", owner: "third", as: .answering) == .held(.answering))
    }

    @Test func somethingSpentOnceStaysSpent() async throws {
        let world = try Self.world()
        let ledger = Self.ledger(world, inDoubt: .doNotSendAgain)
        let until = world.clock.now + 600
        #expect(try await ledger.spendOnce("oauth-state:n1", businessId: "B1", expiresAt: until))
        #expect(try await ledger.spendOnce("oauth-state:n1", businessId: "B1", expiresAt: until) == false)
        #expect(try await ledger.spendOnce("oauth-state:n2", businessId: "B1", expiresAt: until))
    }

    @Test func aPauseEndsWhenItsTimeDoes() async throws {
        let world = try Self.world()
        let conversations = Conversations(store: world.store, table: world.tables.conversations, clock: world.clock.clock)
        let until = try await conversations.pause(
            platform: .instagram, account: "17841400000000001", customer: "42", businessId: "B1", seconds: 3600, by: .human)
        #expect(until == world.clock.now + 3600)
        var state = try await conversations.state(platform: .instagram, account: "17841400000000001", customer: "42")
        #expect(state.isPaused(at: world.clock.now))
        #expect(try await conversations.paused(businessId: "B1").count == 1)
        world.clock.advance(3601)
        state = try await conversations.state(platform: .instagram, account: "17841400000000001", customer: "42")
        #expect(!state.isPaused(at: world.clock.now))
        #expect(try await conversations.paused(businessId: "B1").isEmpty)
        // No pause is longer than Meta's 7-day human-agent window.
        let capped = try await conversations.pause(
            platform: .messenger, account: "102030405060708", customer: "7", businessId: "B1", seconds: 30 * 24 * 3600, by: .human)
        #expect(capped == world.clock.now + Conversations.maxPauseSeconds)
    }
}

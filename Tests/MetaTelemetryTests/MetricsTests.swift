import MetaTelemetry
import MetaWebhooks
import Testing

/// The metrics alone: one CloudWatch embedded-metric document per platform an invocation
/// touched, counting messages (not events), under the namespace and the two dimension sets
/// the stack's dashboard and alarms read.
@Suite struct MetricsTests {
    @Test func eachPlatformIsOneDocumentCountingItsMessages() throws {
        var sent = ConversationEvent(.replySent, businessId: "B1", platform: .instagram, messageIds: ["m_1", "m_2"])
        sent.agentLatencyMs = 412
        let events = [
            ConversationEvent(.accepted, businessId: "B1", platform: .instagram, messageIds: ["m_1", "m_2"]), sent,
            ConversationEvent(.replyFailed, businessId: "B1", platform: .whatsapp, messageIds: ["w_1"], reason: "throttled (613)"),
            ConversationEvent(.commentSkipped, businessId: "B1", platform: .instagram, reason: "comment_too_old"),
        ]
        let documents = Metrics().documents(for: events, function: "receive", now: 1_796_598_000_000)
        #expect(documents.map { $0["Platform"]?.string } == ["instagram", "whatsapp"])
        let instagram = try #require(documents.first)
        #expect(instagram["Function"]?.string == "receive")
        #expect(instagram["Accepted"]?.int64 == 2)
        #expect(instagram["Answered"]?.int64 == 2)
        #expect(instagram["CommentsSkipped"]?.int64 == 1)
        #expect(instagram["Failed"]?.int64 == 0)
        #expect(instagram["AgentLatency"]?.int64 == 412)
        #expect(instagram["businessId"]?.string == "B1")
        let emf = try #require(instagram["_aws"]?["CloudWatchMetrics"]?.array?.first)
        #expect(emf["Namespace"]?.string == "MetaMessaging")
        #expect(emf["Dimensions"] == [["Function", "Platform"], ["Function"]])
        let names = (emf["Metrics"]?.array ?? []).compactMap { $0["Name"]?.string }
        #expect(names == Metrics.counts.map(\.name) + ["AgentLatency"])
        #expect(Set(names).isSubset(of: Set(Metrics.allNames)))

        let whatsapp = try #require(documents.last)
        #expect(whatsapp["Failed"]?.int64 == 1)
        #expect(whatsapp["Throttled"]?.int64 == 1)
        #expect(Metrics().documents(for: [], function: "receive", now: 0).isEmpty)
    }
}

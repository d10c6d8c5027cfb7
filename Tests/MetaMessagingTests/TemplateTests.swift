import Foundation
import MetaMessaging
import MetaTelemetry
import MetaWebhooks
import TestSupport
import Testing

/// The stack's dashboard and alarms watch the metrics the code emits (issue 36): a metric
/// renamed in the code, or one the template names that nothing emits, fails here rather than
/// as an empty graph or an alarm that can never fire.
@Suite struct TemplateTests {
    static func template() throws -> String {
        try String(contentsOf: Executables.packageRoot.appendingPathComponent("template.yaml"), encoding: .utf8)
    }

    static func matches(_ pattern: String, in text: String) throws -> Set<String> {
        let regex = try NSRegularExpression(pattern: pattern)
        let range = NSRange(text.startIndex..., in: text)
        return Set(
            regex.matches(in: text, range: range).compactMap { match in
                Range(match.range(at: 1), in: text).map { String(text[$0]) }
            })
    }

    @Test func theDashboardShowsEveryMetricTheCodeEmitsAndNoOther() throws {
        let template = try Self.template()
        let emitted = Set(Metrics.allNames)
        // The dashboard's searches: `SEARCH('{MetaMessaging,...} MetricName=\"X\"', ...)`.
        let shown = try Self.matches(#"MetricName=\\"(\w+)\\""#, in: template)
        #expect(shown == emitted, "shown but not emitted: \(shown.subtracting(emitted)); emitted but not shown: \(emitted.subtracting(shown))")
        // Only the namespace and the dimension sets the code writes.
        let schemas = try Self.matches(#"SEARCH\('\{([^}]*)\}"#, in: template)
        #expect(schemas == ["MetaMessaging,Function,Platform", "MetaMessaging,Function"])
        #expect(!template.contains("METRICS_NAMESPACE"), "the dashboard reads the MetaMessaging namespace")
    }

    @Test func theAlarmsWatchMetricsTheCodeEmitsWithDimensionsItWrites() throws {
        let template = try Self.template()
        let alarmed =
            try Self.matches(#"Namespace: MetaMessaging, MetricName: (\w+)"#, in: template)
            .union(Self.matches(#"Namespace: MetaMessaging\n\s+MetricName: (\w+)"#, in: template))
        #expect(alarmed == ["Throttled", "Answered", "Failed", "ConversationEventsLost", "ConnectionsInactive", "WhatsAppQualityDrops"])
        #expect(alarmed.isSubset(of: Set(Metrics.allNames)))
        // Alarms name one function: the per-function dimension set must be one the code writes.
        let document = try #require(
            Metrics().documents(for: [ConversationEvent(.replySent, platform: .instagram)], function: "process", now: 0).first)
        let directive = try #require(document["_aws"]?["CloudWatchMetrics"]?.array?.first)
        #expect(directive["Dimensions"] == [["Function", "Platform"], ["Function"]])
        let values = try Self.matches(#"Dimensions: \[\{Name: Function, Value: (\w+)\}\]"#, in: template)
        #expect(values == ["process", "receive"])
        // Each alarm can notify the optional topic.
        let alarms = template.components(separatedBy: "Type: AWS::CloudWatch::Alarm").count - 1
        #expect(alarms == 7)
        #expect(template.components(separatedBy: "AlarmActions: !If [HasAlarmTopic, [!Ref AlarmTopicArn], !Ref AWS::NoValue]").count - 1 == alarms)
    }
}

import FunctionRuntime
import Logging
import MetaWebhooks

/// CloudWatch Embedded Metric Format: one JSON line per invocation and platform on stderr
/// (Lambda ships it to CloudWatch Metrics with no API call and no permission; locally it
/// goes with the logs, so stdout keeps its one document). Counts of messages and the agent's
/// and Graph's latencies, with the dimensions `Function` and `Platform`; the business is a
/// property, not a dimension, so the number of metrics stays bounded.
public struct Metrics: Sendable {
    public let namespace: String

    public init(namespace: String = "MetaMessaging") {
        self.namespace = namespace
    }

    /// The count metrics, in the order written: the messages of the events each counts.
    public static let counts: [(name: String, counts: @Sendable (ConversationEvent) -> Bool)] = [
        ("Accepted", { $0.kind == .accepted }), ("Queued", { $0.kind == .accepted && $0.reason == "queued" }),
        ("Answered", { $0.kind == .replySent || $0.kind == .noReply }), ("Skipped", { $0.kind == .skipped }),
        ("Duplicates", { $0.kind == .duplicate }), ("Failed", { $0.kind == .replyFailed }), ("Paused", { $0.kind == .paused }),
        ("DeliveryStatuses", { $0.kind == .deliveryStatus }),
        // Of the failed, those Meta throttled (left for redelivery); which account, the log line says.
        ("Throttled", { $0.kind == .replyFailed && ($0.reason?.hasPrefix("throttled") ?? false) }),
        // Replies that may have gone out without their outcome recorded (REPLY_IN_DOUBT decides).
        ("RepliesInDoubt", { $0.kind == .replyInDoubt }),
        // Comments: claimed for the agent, answered (privately, publicly or both), left.
        ("CommentsAccepted", { $0.kind == .commentAccepted }), ("CommentsReplied", { $0.kind == .commentReplied }),
        ("CommentsSkipped", { $0.kind == .commentSkipped }),
        // A connection found expired or revoked (Graph code 190) while answering: a person
        // must connect that location again.
        ("ConnectionsInactive", { $0.kind == .connectionInactive }),
        // A WhatsApp number's quality dropped: it may reach fewer customers.
        ("WhatsAppQualityDrops", { $0.kind == .whatsappQualityDrop }),
    ]

    /// Every metric the product emits (the counts, the latencies, and lost events): what the
    /// stack's dashboard and alarms may name (a test holds `template.yaml` to it).
    public static var allNames: [String] { counts.map(\.name) + ["AgentLatency", "GraphLatency", "ConversationEventsLost"] }

    /// The EMF documents for these events (one per platform seen; none without events).
    public func documents(for events: [ConversationEvent], function: String, now: Int64) -> [JSON] {
        guard !events.isEmpty else { return [] }
        let groups = Dictionary(grouping: events) { $0.platform?.rawValue ?? "none" }
        return groups.keys.sorted().compactMap { platform -> JSON? in
            let group = groups[platform] ?? []
            var values: [String: JSON] = ["Function": .string(function), "Platform": .string(platform)]
            var metrics: [JSON] = []
            for (name, counts) in Self.counts {
                let count = group.filter(counts).reduce(0) { $0 + max($1.messageIds.count, 1) }
                values[name] = .number(String(count))
                metrics.append(["Name": .string(name), "Unit": "Count"])
            }
            for (name, latencies) in [
                ("AgentLatency", group.compactMap(\.agentLatencyMs)), ("GraphLatency", group.compactMap(\.graphLatencyMs)),
            ] where !latencies.isEmpty {
                values[name] = latencies.count == 1 ? .number(String(latencies[0])) : .array(latencies.map { .number(String($0)) })
                metrics.append(["Name": .string(name), "Unit": "Milliseconds"])
            }
            let businesses = Set(group.compactMap(\.businessId))
            if businesses.count == 1, let only = businesses.first { values["businessId"] = .string(only) }
            values["_aws"] = [
                "Timestamp": .number(String(now)),
                "CloudWatchMetrics": [
                    // Per platform, and per function alone (what the stack's alarms watch).
                    ["Namespace": .string(namespace), "Dimensions": [["Function", "Platform"], ["Function"]], "Metrics": .array(metrics)]
                ],
            ]
            return .dictionary(values)
        }
    }
}

extension Metrics {
    /// `ConversationEventsLost`: events the log could not deliver in one invocation (dimension
    /// `Function`).
    public func lost(_ count: Int, function: String, now: Int64) -> JSON {
        [
            "Function": .string(function), "ConversationEventsLost": .number(String(count)),
            "_aws": [
                "Timestamp": .number(String(now)),
                "CloudWatchMetrics": [
                    ["Namespace": .string(namespace), "Dimensions": [["Function"]], "Metrics": [["Name": "ConversationEventsLost", "Unit": "Count"]]]
                ],
            ],
        ]
    }
}

/// What a function reports besides its answer: the conversation log (`CONVERSATION_STREAM`)
/// and the metrics (`METRICS`), both sent after the invocation's answer.
public struct Telemetry: Sendable {
    public let function: String
    public let log: (any ConversationLog)?
    public let metrics: Metrics?
    public let includeText: Bool

    public init(function: String, log: (any ConversationLog)? = nil, metrics: Metrics? = nil, includeText: Bool = false) {
        self.function = function
        self.log = log
        self.metrics = metrics
        self.includeText = includeText
    }

    /// Nothing reported.
    public static let none = Telemetry(function: "")

    public var isOn: Bool { log != nil || metrics != nil }

    /// The events of one invocation, sent (and counted) after its answer; nil when nothing is
    /// reported.
    public func events(for context: InvocationContext) -> ConversationEvents? {
        guard isOn else { return nil }
        let events = ConversationEvents(includeText: includeText)
        let (log, metrics, function, logger) = (self.log, self.metrics, self.function, context.logger)
        context.afterResponse.add {
            let all = events.drain()
            if let metrics {
                for document in metrics.documents(for: all, function: function, now: ConversationEvent.nowMilliseconds()) {
                    Output.stderr(String(decoding: document.encoded(), as: UTF8.self))
                }
            }
            if let log, !all.isEmpty {
                let outcome = await log.put(all, function: function, logger: logger)
                if outcome.failed > 0 {
                    logger.warning("conversation events lost", metadata: ["failed": "\(outcome.failed)", "sent": "\(outcome.sent)"])
                    if let metrics {
                        let lost = metrics.lost(outcome.failed, function: function, now: ConversationEvent.nowMilliseconds())
                        Output.stderr(String(decoding: lost.encoded(), as: UTF8.self))
                    }
                }
            }
        }
        return events
    }
}

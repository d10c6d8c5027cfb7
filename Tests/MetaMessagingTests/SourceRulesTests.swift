import Foundation
import TestSupport
import Testing

/// Rules about the sources themselves, read from `Sources/`.
@Suite struct SourceRulesTests {
    static func sources(in module: String) throws -> [(path: String, text: String)] {
        let root = Executables.packageRoot.appendingPathComponent("Sources").appendingPathComponent(module)
        let files = FileManager.default.enumerator(atPath: root.path)?.compactMap { $0 as? String }.filter { $0.hasSuffix(".swift") } ?? []
        return try files.sorted().map { ("\(module)/\($0)", try String(contentsOf: root.appendingPathComponent($0), encoding: .utf8)) }
    }

    /// Time is a dependency (issue 35): the product's modules read the time and sleep only
    /// through the `WallClock` they are given, so a test's clock governs every rule about time.
    /// The system's clocks are read in `WallClock.swift` alone; the process shells (`serve`,
    /// the local HTTP server) and the HTTP client's socket deadlines (NIO's own) are outside
    /// the rule.
    @Test func onlyTheClockReadsTheTime() throws {
        let forbidden = ["ContinuousClock.now", "SuspendingClock", "Task.sleep(", "Date()", "clock_gettime", "deadline: .now", "until: .now"]
        var offences: [String] = []
        for module in ["Essentials", "FunctionRuntime", "KeyValueStore", "AWSSigning", "MetaMessaging", "SafeJSON", "HTTPTransport"] {
            for (path, text) in try Self.sources(in: module) where path != "Essentials/WallClock.swift" {
                for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                    let code = line.split(separator: "//", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
                    for word in forbidden where code.contains(word) { offences.append("\(path):\(number + 1): \(word)") }
                }
            }
        }
        #expect(offences.isEmpty, "read the time through the WallClock you are given: \(offences)")
    }

    /// The module map (docs/architecture.md), enforced: what each module may import, ours and
    /// others'. The compiler only stops imports Package.swift does not declare; this stops the
    /// ones the design forbids even where a dependency would allow them: the core
    /// (`MetaMessaging`) knows the ports (HTTPTransport, KeyValueStore) and never SwiftNIO or
    /// the local server; the runtime knows nothing of HTTP clients, stores or Meta; no product
    /// module imports Foundation (its cost is measured in docs/benchmarks.md).
    static let allowedImports: [String: Set<String>] = [
        "Essentials": [],
        "SafeJSON": ["Essentials"],
        "HTTPTransport": ["Essentials"],
        "FunctionRuntime": ["Essentials", "SafeJSON", "Logging"],
        "AWSSigning": ["Essentials", "HTTPTransport"],
        "KeyValueStore": ["Essentials", "SafeJSON", "HTTPTransport", "AWSSigning", "Dispatch"],
        "NIOHTTPTransport": ["Essentials", "HTTPTransport", "NIOCore", "NIOPosix", "NIOHTTP1", "NIOSSL", "NIOTLS", "NIOConcurrencyHelpers"],
        "LocalHTTPServer": ["Essentials", "NIOCore", "NIOPosix", "NIOHTTP1", "NIOConcurrencyHelpers"],
        "MetaWebhooks": ["Essentials", "SafeJSON"],
        "MetaAgents": ["Essentials", "HTTPTransport", "AWSSigning", "MetaWebhooks"],
        "MetaGraph": ["Essentials", "SafeJSON", "HTTPTransport", "MetaWebhooks", "Logging"],
        "MetaTenancy": ["Essentials", "KeyValueStore", "MetaWebhooks", "MetaAgents", "MetaGraph", "Logging"],
        "MetaTelemetry": ["Essentials", "HTTPTransport", "AWSSigning", "FunctionRuntime", "MetaWebhooks", "MetaTenancy", "Logging"],
        "MetaConnect": [
            "Essentials", "SafeJSON", "HTTPTransport", "KeyValueStore", "FunctionRuntime", "MetaWebhooks", "MetaGraph", "MetaTenancy", "MetaTelemetry",
            "Logging",
        ],
        "MetaMessaging": [
            "Essentials", "SafeJSON", "MetaWebhooks", "MetaAgents", "MetaGraph", "MetaTenancy", "MetaTelemetry", "MetaConnect", "HTTPTransport",
            "FunctionRuntime", "AWSSigning",
            "KeyValueStore", "Logging",
        ],
    ]
    /// The system's own, allowed everywhere.
    static let systemModules: Set<String> = ["Glibc", "Musl", "Darwin", "Synchronization"]

    @Test func eachModuleImportsOnlyWhatTheModuleMapAllows() throws {
        var offences: [String] = []
        for (module, allowed) in Self.allowedImports {
            for (path, text) in try Self.sources(in: module) {
                for line in text.split(separator: "\n") where line.hasPrefix("import ") || line.hasPrefix("@_exported import ") {
                    let imported = String(line.split(separator: " ").last ?? "")
                    if !allowed.contains(imported) && !Self.systemModules.contains(imported) { offences.append("\(path): import \(imported)") }
                }
            }
        }
        #expect(offences.isEmpty, "imports the module map forbids: \(offences)")
    }
}

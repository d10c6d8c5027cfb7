// scripts/bench: speed and memory figures, printed, never asserted.
//   bench BIN_DIR
// BIN_DIR holds the release products (static Swift standard library), as deployed.
import AWSSigning
import Foundation
import FunctionRuntime
import HTTPTransport
import KeyValueStore
import Logging
import MetaMessaging
import MetaTenancy
import MetaWebhooks
import NIOHTTPTransport
import Synchronization
import TestSupport

// `bench --bare-runtime-client`: the protocol's floor as a process of its own (see below).
if CommandLine.arguments.dropFirst().first == "--bare-runtime-client" {
    let endpoint = ProcessInfo.processInfo.environment["AWS_LAMBDA_RUNTIME_API"] ?? ""
    BareRuntimeClient.run(port: Int(endpoint.split(separator: ":").last ?? "") ?? 0)
    exit(0)
}

let binDir = CommandLine.arguments.dropFirst().first ?? ".build/release"
/// `bench BIN_DIR [SECTION...]` runs only the sections named (verify, store, receive, sqs,
/// requests, fairness, signals, log, turns, campaign); none named runs them all but the
/// campaign (about 12 minutes), which runs only when named. Only verify runs without moto.
let sections = Set(CommandLine.arguments.dropFirst(2))
func wants(_ section: String) -> Bool { sections.contains(section) || (sections.isEmpty && section != "campaign" && section != "soak") }
let root = Executables.packageRoot
/// The key the bench's HTTP agents are called with (required in Lambda mode).
let benchAgentSecret = "bench-agent-secret-0123456789abcdef0123"

func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    return sorted.isEmpty ? 0 : sorted[sorted.count / 2]
}

func percentile(_ values: [Double], _ p: Double) -> Double {
    let sorted = values.sorted()
    return sorted.isEmpty ? 0 : sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]
}

func fmt(_ value: Double, _ digits: Int = 2) -> String { String(format: "%.\(digits)f", value) }

func line(_ name: String, _ value: String) { print(name.padding(toLength: 62, withPad: " ", startingAt: 0) + value) }

/// Runs a binary once with stdin from a file and stdout/stderr to /dev/null (posix_spawn, no
/// pipes, so the figure is the process's own cost); returns the wall time in ms and records
/// the child's peak RSS in `peakRSSKB` (its own, from wait4: RUSAGE_CHILDREN would also count
/// the builds scripts/bench ran before exec'ing this tool).
nonisolated(unsafe) var peakRSSKB = 0
func timeProcess(
    _ path: String, environment: [String: String], stdinFile: String, stdoutFile: String = "/dev/null", stderrFile: String = "/dev/null"
) throws -> Double {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, stdinFile, O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, stdoutFile, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    posix_spawn_file_actions_addopen(&actions, 2, stderrFile, O_WRONLY | O_CREAT | O_APPEND, 0o600)
    let argv: [UnsafeMutablePointer<CChar>?] = [strdup(path), nil]
    let envp: [UnsafeMutablePointer<CChar>?] = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
    defer { (argv + envp).forEach { free($0) } }
    var pid: pid_t = 0
    let start = DispatchTime.now()
    guard posix_spawn(&pid, path, &actions, nil, argv, envp) == 0 else { throw SpawnError(path: path) }
    var status: Int32 = 0
    var usage = rusage()
    wait4(pid, &status, 0, &usage)
    peakRSSKB = max(peakRSSKB, usage.ru_maxrss)
    return Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e6
}

func fileSize(_ path: String) -> Int {
    ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber)?.intValue ?? 0
}

func strippedSize(_ path: String) -> Int {
    let copy = NSTemporaryDirectory() + "stripped-\(UUID().uuidString)"
    try? FileManager.default.copyItem(atPath: path, toPath: copy)
    let strip = Process()
    strip.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    strip.arguments = ["strip", copy]
    try? strip.run()
    strip.waitUntilExit()
    defer { try? FileManager.default.removeItem(atPath: copy) }
    return fileSize(copy)
}

/// CPU seconds (user + system) used so far by waited-for children.
func childCPUSeconds() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_CHILDREN.rawValue, &usage)
    return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
}

/// Microseconds per call of a handler, called from a nonisolated context (no actor hops).
func timeHandler(_ function: some FunctionHandler, event: [UInt8], count: Int) async throws -> Double {
    var quiet = Logger(label: "bench")
    quiet.logLevel = .warning
    let context = InvocationContext(requestID: "bench", deadline: .now + .seconds(30), logger: quiet)
    for _ in 0..<500 { _ = try await function.handle(event: event, context: context) }
    let start = DispatchTime.now()
    for _ in 0..<count { _ = try await function.handle(event: event, context: context) }
    return Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e3 / Double(count)
}

/// A signed Instagram text webhook, as API Gateway hands it to `receive`.
func instagramWebhook(mid: String, sender: String = "1234567890123456", timestamp: Int, signature: WebhookSignature) -> [UInt8] {
    let body =
        #"{"object":"instagram","entry":[{"id":"17841400000000001","time":1,"messaging":[{"sender":{"id":"\#(sender)"},"recipient":{"id":"17841400000000001"},"timestamp":\#(timestamp),"message":{"mid":"\#(mid)","text":"hello \#(timestamp)"}}]}]}"#
    let object: [String: Any] = [
        "version": "2.0", "rawPath": "/webhooks/meta", "headers": ["x-hub-signature-256": signature.header(for: Array(body.utf8))],
        "requestContext": ["http": ["method": "POST"]], "body": body, "isBase64Encoded": false,
    ]
    return Array((try? JSONSerialization.data(withJSONObject: object)) ?? Data())
}

/// A Graph stand-in that knows the demo tenant's Page token and accounts.
func demoGraph() async throws -> GraphStandIn {
    let graph = try await GraphStandIn()
    await graph.allow(token: "local-page-token", accounts: ["102030405060708", "106540352242922"])
    return graph
}

/// One `receive` process in the Lambda loop against a Runtime API stand-in: by default on a
/// fresh file store holding the demo tenant, with `environment` added.
struct ReceiveLoop: @unchecked Sendable {
    let api: RuntimeAPIStandIn
    let process: Process

    /// A new file-store folder holding the demo tenant.
    static func tenantFolder() throws -> String {
        let directory = NSTemporaryDirectory() + "bench-receive-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        for name in ["meta-platform-identifiers.jsonl", "business-external-credentials.jsonl"] {
            try FileManager.default.copyItem(atPath: root.appendingPathComponent("scripts/local-tenant/\(name)").path, toPath: "\(directory)/\(name)")
        }
        return directory
    }

    /// `receive` in its Lambda loop, on a file store in `folder` (a new one when nil) unless
    /// `fileStore` is false.
    static func start(
        binDir: String, graph: GraphStandIn, environment extra: [String: String], fileStore: Bool = true, folder: String? = nil,
        stderrFile: String? = nil
    ) async throws -> ReceiveLoop {
        let api = try await RuntimeAPIStandIn()
        let process = try launch(
            binDir: binDir, endpoint: api.endpoint, graph: graph, environment: extra, fileStore: fileStore, folder: folder, stderrFile: stderrFile)
        return ReceiveLoop(api: api, process: process)
    }

    /// A `receive` process in its Lambda loop against the Runtime API at `endpoint`.
    static func launch(
        binDir: String, endpoint: String, graph: GraphStandIn, environment extra: [String: String], fileStore: Bool = true, folder: String? = nil,
        stderrFile: String? = nil, function: String = "receive"
    ) throws -> Process {
        var environment = [
            "META_APP_SECRET": "local-app-secret", "META_GRAPH_API_BASE_URL": graph.baseURL, "LOG_LEVEL": "warning",
            "AWS_LAMBDA_RUNTIME_API": endpoint,
        ]
        if fileStore {
            environment["KV_BACKEND"] = "file"
            environment["KV_FILE_DIR"] = try folder ?? tenantFolder()
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "\(binDir)/\(function)")
        process.environment = environment.merging(extra) { $1 }
        if let stderrFile {
            _ = FileManager.default.createFile(atPath: stderrFile, contents: nil)
            process.standardError = FileHandle(forWritingAtPath: stderrFile)
        } else {
            process.standardError = FileHandle.nullDevice
        }
        try process.run()
        return process
    }

    /// `receive` against the lean Runtime API the verify figures use (`BlockingRuntimeAPI`: one
    /// thread, blocking sockets), every event waiting: what the loop does when the stand-in
    /// takes next to nothing of the two cores, as Lambda's Runtime API takes none of the
    /// function's. Webhooks/s over `events`, and how long receive had each (ms).
    static func lean(
        binDir: String, graph: GraphStandIn, environment: [String: String], warmUp: [[UInt8]], events: [[UInt8]]
    ) async throws -> (perSecond: Double, durations: [Double], answered: Int) {
        let api = try BlockingRuntimeAPI(events: warmUp + events)
        let process = try launch(binDir: binDir, endpoint: api.endpoint, graph: graph, environment: environment)
        _ = await api.answered(warmUp.count)
        let start = DispatchTime.now()
        let (responses, _) = await api.answered(events.count, timeout: 120)
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9
        let durations = Array(api.durations.dropFirst(warmUp.count))
        api.close()
        process.terminate()
        process.waitUntilExit()
        return (Double(responses - warmUp.count) / seconds, durations, responses - warmUp.count)
    }

    /// Each event in turn, after `warmUp` more: the time from handing it over to its answer
    /// (ms), the seconds for all, and the answers.
    func time(warmUp: [[UInt8]], events: [[UInt8]]) async -> (latencies: [Double], seconds: Double, answers: [String]) {
        for event in warmUp { _ = await api.outcome(of: await api.enqueue(event), timeout: .seconds(10)) }
        var latencies: [Double] = []
        var answers: [String] = []
        let start = DispatchTime.now()
        for event in events {
            let begin = DispatchTime.now()
            if case .response(let body)? = await api.outcome(of: await api.enqueue(event), timeout: .seconds(10)) { answers.append(body) }
            latencies.append(Double(DispatchTime.now().uptimeNanoseconds - begin.uptimeNanoseconds) / 1e6)
        }
        return (latencies, Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9, answers)
    }

    /// All of `events` queued at once, after `warmUp` one at a time, as a busy Lambda
    /// environment finds them waiting: the seconds from queueing the first to the last answer,
    /// and how long `receive` had each (from `next` handing it out to its answer, in ms).
    func backlog(warmUp: [[UInt8]], events: [[UInt8]]) async -> (durations: [Double], seconds: Double, answered: Int) {
        for event in warmUp { _ = await api.outcome(of: await api.enqueue(event), timeout: .seconds(10)) }
        let start = DispatchTime.now()
        var ids: [String] = []
        for event in events { ids.append(await api.enqueue(event)) }
        var answered = 0
        for id in ids where await api.outcome(of: id, timeout: .seconds(30)) != nil { answered += 1 }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9
        var durations: [Double] = []
        for id in ids {
            if let time = await api.serviceTime(of: id) {
                durations.append(Double(time.components.seconds) * 1000 + Double(time.components.attoseconds) / 1e15)
            }
        }
        return (durations, seconds, answered)
    }

    func stop() async {
        process.terminate()
        process.waitUntilExit()
        await api.shutdown()
    }
}

let mb = 1024.0 * 1024.0
print("# meta-messaging benchmark (\(ProcessInfo.processInfo.activeProcessorCount) cores), release build in \(binDir)\n")

// MARK: verify, local mode
if wants("verify") {
    let verify = "\(binDir)/verify"
    let event = root.appendingPathComponent("events/verify.json").path
    let env = ["META_WEBHOOK_VERIFY_TOKEN": "local-verify-token", "LOG_LEVEL": "warning"]
    for _ in 0..<10 { _ = try timeProcess(verify, environment: env, stdinFile: event) }
    var times: [Double] = []
    for _ in 0..<200 { times.append(try timeProcess(verify, environment: env, stdinFile: event)) }
    var baseline: [Double] = []
    let verifyPeakRSSKB = peakRSSKB
    for _ in 0..<200 { baseline.append(try timeProcess("/bin/true", environment: env, stdinFile: event)) }
    print("## verify")
    line("local mode, whole process, median of 200", "\(fmt(median(times))) ms (p90 \(fmt(percentile(times, 0.9))) ms)")
    line(
        "  the same for /bin/true (spawn cost), and the ratio", "\(fmt(median(baseline))) ms, verify = \(fmt(median(times) / max(median(baseline), 0.001), 1))x"
    )
    line("peak RSS of a verify process", "\(fmt(Double(verifyPeakRSSKB) / 1024, 1)) MB")
    line("binary size (unstripped / stripped)", "\(fmt(Double(fileSize(verify)) / mb, 1)) MB / \(fmt(Double(strippedSize(verify)) / mb, 1)) MB")
    if FileManager.default.fileExists(atPath: "\(binDir)/receive") {
        line(
            "receive binary size (unstripped / stripped)",
            "\(fmt(Double(fileSize("\(binDir)/receive")) / mb, 1)) MB / \(fmt(Double(strippedSize("\(binDir)/receive")) / mb, 1)) MB")
    }
}

// MARK: verify, Lambda loop
if wants("verify") {
    let event = Array(try Data(contentsOf: root.appendingPathComponent("events/verify.json")))
    let api = try BlockingRuntimeAPI(event: event)
    let cpuBefore = childCPUSeconds()
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "\(binDir)/verify")
    process.environment = ["AWS_LAMBDA_RUNTIME_API": api.endpoint, "META_WEBHOOK_VERIFY_TOKEN": "local-verify-token", "LOG_LEVEL": "warning"]
    process.standardError = FileHandle.nullDevice
    try process.run()
    _ = api.run(500)
    let count = 20_000
    let start = DispatchTime.now()
    let totals = api.run(count)
    let wall = Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e3 / Double(count)
    api.close()
    process.terminate()
    process.waitUntilExit()
    let cpu = (childCPUSeconds() - cpuBefore) * 1e6 / Double(count + 500)

    // The handler alone, in this process: API Gateway decoding, verify, proxy response encoding.
    let handler = try await timeHandler(VerifyHandler(verifyToken: "local-verify-token").function, event: event, count: count)

    // The floor: a bare client process doing the same two exchanges against a fresh stand-in.
    let floorAPI = try BlockingRuntimeAPI(event: event)
    let client = Process()
    client.executableURL = URL(fileURLWithPath: CommandLine.arguments[0])
    client.arguments = ["--bare-runtime-client"]
    client.environment = ["AWS_LAMBDA_RUNTIME_API": floorAPI.endpoint]
    try client.run()
    _ = floorAPI.run(500)
    let floorStart = DispatchTime.now()
    _ = floorAPI.run(count)
    let floor = Double(DispatchTime.now().uptimeNanoseconds - floorStart.uptimeNanoseconds) / 1e3 / Double(count)
    floorAPI.close()
    client.terminate()
    client.waitUntilExit()

    line("Lambda loop, warm, CPU time of the bootstrap per invocation", "\(fmt(cpu, 1)) µs (user + sys, loop + verify)")
    line("  wall time per invocation (loop + verify)", "\(fmt(wall, 1)) µs (\(count) invocations, \(totals.responses) answered, \(totals.errors) errors)")
    line("  the protocol's floor: a bare client process, same exchanges", "\(fmt(floor, 1)) µs (loopback round trips and wake-ups)")
    line("  verify's handler alone (decode, verify, encode), in process", "\(fmt(handler, 1)) µs")
}

// MARK: key-value store
if wants("store") {
    print("\n## key-value store")
    // Each size in a fresh folder. The table is written as a file of the earlier format (one
    // item per line), so the first read is also what a process starting on it pays.
    let table = TableSchema(name: "bench", partitionKey: "id")
    var rates: [Int: [Double]] = [:]
    for size in [100, 10_000, 100_000] {
        let directory = NSTemporaryDirectory() + "bench-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        var text = ""
        for index in 0..<size { text += #"{"Item":{"id":{"S":"item-\#(index)"},"v":{"N":"1"},"tenant":{"S":"B0100001"}}}"# + "\n" }
        try text.write(toFile: "\(directory)/bench.jsonl", atomically: true, encoding: .utf8)
        let loadedBytes = fileSize("\(directory)/bench.jsonl")
        let store = try FileStore(directory: directory, tables: [table])
        var start = DispatchTime.now()
        _ = try await store.get(table, key: ["id": .s("item-0")])
        let firstRead = Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e6
        func perSecond(_ operations: Int, since start: DispatchTime) -> Double {
            Double(operations) / (Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9)
        }
        let operations = 3000
        var generator = SystemRandomNumberGenerator()
        start = DispatchTime.now()
        for _ in 0..<operations { _ = try await store.get(table, key: ["id": .s("item-\(Int.random(in: 0..<size, using: &generator))")]) }
        let gets = perSecond(operations, since: start)
        start = DispatchTime.now()
        for round in 0..<operations {
            try await store.put(table, item: ["id": .s("item-\(Int.random(in: 0..<size, using: &generator))"), "v": .number(round), "tenant": .s("B0100001")])
        }
        let puts = perSecond(operations, since: start)
        // The ledger's claim: a new key, written only if absent.
        start = DispatchTime.now()
        for round in 0..<operations {
            try await store.put(table, item: ["id": .s("new-\(round)"), "v": .n("1"), "tenant": .s("B0100001")], condition: .itemAbsent)
        }
        let conditionalPuts = perSecond(operations, since: start)
        rates[size] = [gets, puts, conditionalPuts]
        line(
            "file store, \(size) items: get / put / conditional put",
            "\(fmt(gets, 0)) / \(fmt(puts, 0)) / \(fmt(conditionalPuts, 0)) ops/s (each fdatasynced)")
        line("  first read (the log loaded: a process starting)", "\(fmt(firstRead, 1)) ms for \(fmt(Double(loadedBytes) / mb, 2)) MB")
        try? FileManager.default.removeItem(atPath: directory)
    }
    if let small = rates[100], let large = rates[100_000] {
        line(
            "  100,000 items against 100: get / put / conditional put",
            "\(fmt(large[0] / small[0])) / \(fmt(large[1] / small[1])) / \(fmt(large[2] / small[2]))x")
    }
}
if wants("store") {
    let moto = try await MotoServer.shared.start()
    let table = TableSchema(name: "bench-\(UUID().uuidString.prefix(8))", partitionKey: "id")
    let store = DynamoDBStore(transport: NIOHTTPTransport(), region: moto.region, endpoint: moto.endpoint, credentials: moto.credentials)
    try await store.createTable(table)
    try await store.put(table, item: ["id": .s("x"), "v": .n("1")])
    for _ in 0..<20 { _ = try await store.get(table, key: ["id": .s("x")]) }
    var latencies: [Double] = []
    for _ in 0..<200 {
        let start = DispatchTime.now()
        _ = try await store.get(table, key: ["id": .s("x")])
        latencies.append(Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e6)
    }
    let signer = SigV4Signer(credentials: moto.credentials, region: moto.region, service: "dynamodb")
    let body = Array(#"{"ConsistentRead":true,"Key":{"id":{"S":"x"}},"TableName":"bench"}"#.utf8)
    let signings = 20000
    let start = DispatchTime.now()
    for _ in 0..<signings {
        _ = signer.sign(method: "POST", url: moto.endpoint + "/", headers: [("X-Amz-Target", "DynamoDB_20120810.GetItem")], body: body, date: 1_795_687_200)
    }
    let signMicros = Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e3 / Double(signings)
    line("DynamoDB GetItem against moto, median (p99)", "\(fmt(median(latencies))) ms (\(fmt(percentile(latencies, 0.99))) ms)")
    line("SigV4 signing per request", "\(fmt(signMicros, 1)) µs")
}

// MARK: receive
if wants("receive") {
    print("\n## receive")
    let secret = WebhookSignature(appSecret: "local-app-secret")
    let body = [UInt8](repeating: UInt8(ascii: "a"), count: 1 << 20)
    let rounds = 200
    let start = DispatchTime.now()
    var failures = 0
    for _ in 0..<rounds { if secret.check(body: body, header: "sha256=" + String(repeating: "0", count: 64)) != nil { failures += 1 } }
    let perMB = Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e6 / Double(rounds)
    line("signature check per MB of body", "\(fmt(perMB, 3)) ms (\(fmt(1000 / perMB, 0)) MB/s)")
}
/// `receive`'s Lambda loop three ways, a line each: one at a time (the bench waits for each
/// answer, then queues the next), `count` waiting (the bench's own hand-offs out of the way, as
/// in a busy Lambda environment), and `leanCount` waiting against the lean Runtime API.
func measureLoop(
    graph: GraphStandIn, environment: [String: String], label: String, indent: String, count: Int, leanCount: Int,
    showPID: Bool = false, event: (Int) -> [UInt8]
) async throws {
    let loop = try await ReceiveLoop.start(binDir: binDir, graph: graph, environment: environment)
    if showPID { print("receive pid \(loop.process.processIdentifier)") }
    func report(_ label: String, perSecond: Double, _ times: [Double], sent: Int) {
        line(label, "\(fmt(perSecond, 0)) /s (median \(fmt(median(times))) ms, p99 \(fmt(percentile(times, 0.99))) ms, \(sent) replies)")
    }
    var before = await graph.messages.count
    let (latencies, seconds, _) = await loop.time(warmUp: (0..<20).map { event($0) }, events: (0..<count).map { event(1000 + $0) })
    report(label, perSecond: Double(count) / seconds, latencies, sent: await graph.messages.count - before - 20)
    before = await graph.messages.count
    let backlog = await loop.backlog(warmUp: [], events: (0..<count).map { event(100_000 + $0) })
    report(
        "\(indent)\(count) waiting; the time receive had each", perSecond: Double(backlog.answered) / backlog.seconds, backlog.durations,
        sent: await graph.messages.count - before)
    await loop.stop()
    before = await graph.messages.count
    let lean = try await ReceiveLoop.lean(
        binDir: binDir, graph: graph, environment: environment, warmUp: (0..<20).map { event(200_000 + $0) },
        events: (0..<leanCount).map { event(300_000 + $0) })
    report(
        "\(indent)\(leanCount) waiting, the lean Runtime API", perSecond: lean.perSecond, lean.durations,
        sent: await graph.messages.count - before - 20)
}

if wants("receive") {
    let graph = try await demoGraph()
    let signature = WebhookSignature(appSecret: "local-app-secret")
    // As deployed (seen and typing shown, metrics on), then with only the reply: what the
    // store and the loop cost without the two extra Graph calls per message.
    for (label, environment) in [
        ("webhooks/s, Lambda loop, file store, echo agent, reply sent", [String: String]()),
        ("  the same, SENDER_ACTIONS=off, METRICS=off (reply only)", ["SENDER_ACTIONS": "off", "METRICS": "off"]),
    ] {
        try await measureLoop(graph: graph, environment: environment, label: label, indent: "    ", count: 600, leanCount: 1200) { index in
            instagramWebhook(mid: "m_bench_\(index)_\(UUID().uuidString)", timestamp: index, signature: signature)
        }
    }
    await graph.shutdown()
}

// MARK: the reply-only loop alone, long enough to profile (`bench <bin> loop`, not in the default run)
if sections.contains("loop") {
    let graph = try await demoGraph()
    let signature = WebhookSignature(appSecret: "local-app-secret")
    try await measureLoop(
        graph: graph, environment: ["SENDER_ACTIONS": "off", "METRICS": "off"], label: "webhooks/s, Lambda loop, reply only, 5000 in a row",
        indent: "  the same, ", count: 5000, leanCount: 5000, showPID: true
    ) { index in
        instagramWebhook(mid: "m_loop_\(index)_\(UUID().uuidString)", timestamp: index, signature: signature)
    }
    await graph.shutdown()
}

// MARK: receive's cold start in local mode, beside verify's (issue 19)
if wants("receive") {
    let graph = try await demoGraph()
    let folder = try ReceiveLoop.tenantFolder()
    let signature = WebhookSignature(appSecret: "local-app-secret")
    let events = NSTemporaryDirectory() + "bench-events-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: events, withIntermediateDirectories: true)
    let runs = 100
    for index in 0..<(runs + 10) {
        let event = instagramWebhook(mid: "m_cold_\(index)_\(UUID().uuidString)", sender: "c\(index)", timestamp: index, signature: signature)
        try Data(event).write(to: URL(fileURLWithPath: "\(events)/\(index).json"))
    }
    let environment = [
        "META_APP_SECRET": "local-app-secret", "META_GRAPH_API_BASE_URL": graph.baseURL, "LOG_LEVEL": "warning", "KV_BACKEND": "file",
        "KV_FILE_DIR": folder,
    ]
    let verifyEnvironment = ["META_WEBHOOK_VERIFY_TOKEN": "local-verify-token", "LOG_LEVEL": "warning"]
    let verifyEvent = root.appendingPathComponent("events/verify.json").path
    for index in 0..<10 { _ = try timeProcess("\(binDir)/receive", environment: environment, stdinFile: "\(events)/\(index).json") }
    var receiveTimes: [Double] = []
    var verifyTimes: [Double] = []
    for index in 10..<(runs + 10) {
        receiveTimes.append(try timeProcess("\(binDir)/receive", environment: environment, stdinFile: "\(events)/\(index).json"))
        verifyTimes.append(try timeProcess("\(binDir)/verify", environment: verifyEnvironment, stdinFile: verifyEvent))
    }
    let sent = await graph.messages.count
    line(
        "receive, local mode, whole process, median (new customer)",
        "\(fmt(median(receiveTimes))) ms (p90 \(fmt(percentile(receiveTimes, 0.9))) ms, \(sent) replies); verify \(fmt(median(verifyTimes))) ms")
    await graph.shutdown()
}

// MARK: the outbound HTTP client, soaked (issue 35): SOAK_MINUTES (default 60) of requests
// that succeed, time out, are too large or find the server gone, 16 at a time (paced); the
// process's open file descriptors and resident memory before and after. Only when named:
// `SOAK_MINUTES=60 scripts/bench soak`.
if wants("soak") {
    func openDescriptors() -> Int { (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? -1 }
    func residentKB() -> Int {
        let status = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
        let line = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") } ?? ""
        return Int(line.split(separator: " ").dropFirst().first ?? "") ?? -1
    }
    let minutes = Double(ProcessInfo.processInfo.environment["SOAK_MINUTES"] ?? "") ?? 60
    let ok = try await LoopbackServer { _ in .json(200, #"{"id":"1"}"#) }
    let slow = try await LoopbackServer { _ in
        try? await Task.sleep(for: .seconds(1))
        return .json(200, "{}")
    }
    let large = try await LoopbackServer { _ in .json(200, "\"" + String(repeating: "x", count: 9 * 1024 * 1024) + "\"") }
    let gone = try await LoopbackServer { _ in .json(200, "{}") }
    let goneURL = gone.baseURL
    await gone.shutdown()
    let transport = NIOHTTPTransport()
    final class Tally: Sendable {
        let kinds = Mutex<[String: Int]>([:])
    }
    let tally = Tally()
    let (okURL, slowURL, largeURL) = (ok.baseURL, slow.baseURL, large.baseURL)
    let round: @Sendable (Int) async -> Void = { index in
        let (url, timeout): (String, Duration) =
            switch index % 20 {
            case 0: (slowURL + "/", .milliseconds(50))
            case 1: (largeURL + "/", .seconds(10))
            case 2: (goneURL + "/", .seconds(2))
            default: (okURL + "/v25.0/me?fields=id", .seconds(10))
            }
        let kind: String
        do {
            let response = try await transport.send(
                OutboundRequest(method: index % 2 == 0 ? "GET" : "POST", url: url, body: Array("{}".utf8)), timeout: timeout)
            kind = "answered \(response.status)"
        } catch {
            kind = "\((error as? TransportError)?.kind ?? .other)"
        }
        tally.kinds.withLock { $0[kind, default: 0] += 1 }
    }
    // Warm-up: every kind of request once, so the pools and buffers exist before the count.
    for index in 0..<40 { await round(index) }
    let descriptorsBefore = openDescriptors()
    let memoryBefore = residentKB()
    let end = ContinuousClock.now + .seconds(minutes * 60)
    var done = 0
    while ContinuousClock.now < end {
        let base = done
        await withTaskGroup(of: Void.self) { group in
            for index in 0..<16 { group.addTask { await round(base + index) } }
        }
        done += 16
        // Paced (at most 160 requests a second): a soak looks for what leaks, not for speed.
        try? await Task.sleep(for: .milliseconds(100))
    }
    // Idle connections past the idle limit are closed on their next use; give them a last round.
    for index in 0..<40 { await round(index) }
    let descriptorsAfter = openDescriptors()
    let memoryAfter = residentKB()
    line(
        "HTTP client soak, \(fmt(minutes, 0)) min: requests / outcomes",
        "\(done) / \(tally.kinds.withLock { $0 }.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))")
    line("HTTP client soak: open descriptors before / after", "\(descriptorsBefore) / \(descriptorsAfter)")
    line("HTTP client soak: resident memory before / after", "\(memoryBefore / 1024) MB / \(memoryAfter / 1024) MB")
    await ok.shutdown()
    await slow.shutdown()
    await large.shutdown()
}

// MARK: what reading the secrets from Secrets Manager adds to a cold start (issue 38)
if wants("secrets") || wants("receive") {
    // `receive` as a whole process (local mode, a file store): its secret from the
    // environment, then from Secrets Manager (moto on loopback, signature checking on; in AWS
    // a GetSecretValue in the function's region takes longer than on loopback).
    let graph = try await demoGraph()
    let folder = try ReceiveLoop.tenantFolder()
    let moto = try await MotoServer.shared.start()
    let client = AWSJSONClient(
        transport: NIOHTTPTransport(), signer: SigV4Signer(credentials: moto.credentials, region: moto.region, service: "secretsmanager"),
        endpoint: moto.endpoint, targetPrefix: "secretsmanager", timeout: .seconds(10), backoff: Backoff(maxAttempts: 1),
        contentType: "application/x-amz-json-1.1")
    struct Failure: Error {}
    let created = try await client.call(
        "CreateSecret", body: Array(#"{"Name":"bench-app-secret-\#(UUID().uuidString)","SecretString":"local-app-secret"}"#.utf8)
    ) { _ -> (Failure, Bool) in (Failure(), false) }
    let arn = (try JSON.parse(created))["ARN"]?.string ?? ""
    let signature = WebhookSignature(appSecret: "local-app-secret")
    let events = NSTemporaryDirectory() + "bench-secrets-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: events, withIntermediateDirectories: true)
    let runs = 60
    for index in 0..<(2 * runs + 10) {
        let event = instagramWebhook(mid: "m_secret_\(index)_\(UUID().uuidString)", sender: "s\(index)", timestamp: index, signature: signature)
        try Data(event).write(to: URL(fileURLWithPath: "\(events)/\(index).json"))
    }
    let base = [
        "META_GRAPH_API_BASE_URL": graph.baseURL, "LOG_LEVEL": "warning", "KV_BACKEND": "file", "KV_FILE_DIR": folder,
    ]
    let plain = base.merging(["META_APP_SECRET": "local-app-secret"]) { $1 }
    let managed = base.merging(moto.environment) { $1 }.merging(["META_APP_SECRET_ARN": arn, "SECRETS_MANAGER_ENDPOINT": moto.endpoint]) { $1 }
    for index in 0..<10 { _ = try timeProcess("\(binDir)/receive", environment: index % 2 == 0 ? plain : managed, stdinFile: "\(events)/\(index).json") }
    var plainTimes: [Double] = []
    var managedTimes: [Double] = []
    for index in 0..<runs {
        plainTimes.append(try timeProcess("\(binDir)/receive", environment: plain, stdinFile: "\(events)/\(10 + 2 * index).json"))
        managedTimes.append(try timeProcess("\(binDir)/receive", environment: managed, stdinFile: "\(events)/\(11 + 2 * index).json"))
    }
    line(
        "receive cold start, secret: environment / Secrets Manager",
        "\(fmt(median(plainTimes))) ms / \(fmt(median(managedTimes))) ms (+\(fmt(median(managedTimes) - median(plainTimes))) ms, "
            + "x\(fmt(median(managedTimes) / median(plainTimes), 2)); medians of \(runs), moto on loopback")
    await graph.shutdown()
}

// MARK: receive, 8 processes sharing one file-store folder (issue 19)
if wants("receive") {
    let graph = try await demoGraph()
    let folder = try ReceiveLoop.tenantFolder()
    let signature = WebhookSignature(appSecret: "local-app-secret")
    var loops: [ReceiveLoop] = []
    for _ in 0..<8 { loops.append(try await ReceiveLoop.start(binDir: binDir, graph: graph, environment: [:], folder: folder)) }
    let perProcess = 150
    func events(_ process: Int, _ range: Range<Int>) -> [[UInt8]] {
        // Each process its own customers, as Meta spreads deliveries over connections.
        range.map {
            instagramWebhook(mid: "m_many_\(process)_\($0)_\(UUID().uuidString)", sender: "c\(process)_\($0 % 5)", timestamp: $0, signature: signature)
        }
    }
    await withTaskGroup(of: Void.self) { group in
        for (index, loop) in loops.enumerated() { group.addTask { _ = await loop.time(warmUp: [], events: events(index, 0..<10)) } }
    }
    let start = DispatchTime.now()
    let latencies = await withTaskGroup(of: [Double].self) { group in
        for (index, loop) in loops.enumerated() {
            group.addTask { await loop.time(warmUp: [], events: events(index, 100..<(100 + perProcess))).latencies }
        }
        var all: [Double] = []
        for await some in group { all += some }
        return all
    }
    let seconds = Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9
    let sent = await graph.messages.count
    line(
        "webhooks/s, 8 Lambda-loop processes, one file-store folder",
        "\(fmt(Double(latencies.count) / seconds, 0)) /s (median \(fmt(median(latencies))) ms, p99 \(fmt(percentile(latencies, 0.99))) ms, \(sent) replies)")
    for loop in loops { await loop.stop() }
    await graph.shutdown()
}

// MARK: receive's record of when a webhook last arrived (issue 15)
if wants("receive") {
    // What every webhook pays: the per-process check of which accounts are due.
    let sightings = WebhookSightings()
    let rounds = 1_000_000
    var due = 0
    let start = DispatchTime.now()
    for index in 0..<rounds { due += sightings.due(CollectionOfOne("17841400000000001"), now: Int64(1_795_687_200 + index / 100_000)).count }
    let perCheck = Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / Double(rounds)
    line("last-webhook check per webhook (one account, in process)", "\(fmt(perCheck, 0)) ns (\(due) writes due in \(rounds / 100_000) s of webhooks)")

    // What a due account costs once a minute, after the answer: one conditional update.
    let folder = NSTemporaryDirectory() + "bench-seen-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    for name in ["meta-platform-identifiers.jsonl", "business-external-credentials.jsonl"] {
        try FileManager.default.copyItem(atPath: root.appendingPathComponent("scripts/local-tenant/\(name)").path, toPath: "\(folder)/\(name)")
    }
    let tables = Tables()
    let fileDirectory = TenantDirectory(store: try FileStore(directory: folder, tables: tables.all), tables: tables)
    let moto = try await MotoServer.shared.start()
    let suffix = UUID().uuidString.prefix(8).lowercased()
    let motoTables = Tables(
        credentials: "seen-credentials-\(suffix)", identifiers: "seen-identifiers-\(suffix)", processedMessages: "seen-processed-\(suffix)",
        conversations: "seen-conversations-\(suffix)")
    let motoStore = DynamoDBStore(transport: NIOHTTPTransport(), region: moto.region, endpoint: moto.endpoint, credentials: moto.credentials)
    for table in motoTables.all { try await motoStore.createTable(table) }
    try await motoStore.put(motoTables.identifiers, item: ["identifierId": .s("17841400000000001"), "businessId": .s("B0100001")])
    let motoDirectory = TenantDirectory(store: motoStore, tables: motoTables)
    for (name, directory) in [("file store", fileDirectory), ("DynamoDB (moto)", motoDirectory)] {
        var latencies: [Double] = []
        for index in 0..<100 {
            let begin = DispatchTime.now()
            _ = try await directory.recordWebhookSeen("17841400000000001", epochSeconds: Int64(1_795_687_200 + 60 * index))
            latencies.append(Double(DispatchTime.now().uptimeNanoseconds - begin.uptimeNanoseconds) / 1e6)
        }
        line("last-webhook write, once a minute per account, \(name)", "\(fmt(median(latencies))) ms median (after the answer)")
    }
}

if wants("turns") {
    // One `process` invocation (local mode, the release product, a file store with the demo
    // tenant) with a batch of SQS records: an HTTP agent that answers after 1 s or 5 s, a Graph
    // API that answers after 80 ms. TURN_CONCURRENCY=1 answers the turns one after the other,
    // as process did before conversations ran at the same time.
    let graph = try await demoGraph()
    await graph.setLatency(.milliseconds(80))
    for agentSeconds in [1, 5] {
        let agent = try await LoopbackServer { request in
            try? await Task.sleep(for: .seconds(agentSeconds))
            let reply = ["reply": "re: " + (request.jsonBody?["text"] as? String ?? "")]
            return .json(200, String(decoding: (try? JSONSerialization.data(withJSONObject: reply)) ?? Data(), as: UTF8.self))
        }
        for (shape, conversations) in [("10 conversations", 10), ("1 conversation", 1)] {
            for concurrency in [1, 10] where !(conversations == 1 && concurrency == 1) {
                let folder = NSTemporaryDirectory() + "bench-turns-\(UUID().uuidString)"
                try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
                for name in ["meta-platform-identifiers.jsonl", "business-external-credentials.jsonl"] {
                    try FileManager.default.copyItem(
                        atPath: root.appendingPathComponent("scripts/local-tenant/\(name)").path, toPath: "\(folder)/\(name)")
                }
                let now = Int64(Date().timeIntervalSince1970 * 1000)
                let records: [[String: Any]] = try (0..<10).map { index in
                    let customer = "turns-customer-\(index % conversations)"
                    let accepted = AcceptedMessage(
                        tenant: Tenant(businessId: "B0100001", locationId: "L0100001"),
                        message: InboundMessage(
                            platform: .instagram, messageId: "m_turns_\(UUID().uuidString)", accountId: "17841400000000001", senderId: customer,
                            timestamp: now + Int64(index), content: .text("question \(index)")))
                    return [
                        "messageId": "record-\(index)", "receiptHandle": "handle-\(index)",
                        "body": String(decoding: try JSONEncoder().encode(accepted), as: UTF8.self),
                        "attributes": ["MessageGroupId": "B0100001#instagram#\(customer)", "ApproximateReceiveCount": "1"],
                        "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:eu-west-1:123456789012:process.fifo",
                    ]
                }
                let eventFile = "\(folder)/event.json"
                try JSONSerialization.data(withJSONObject: ["Records": records]).write(to: URL(fileURLWithPath: eventFile))
                let before = await graph.messages.count
                let milliseconds = try timeProcess(
                    "\(binDir)/process",
                    environment: [
                        "KV_BACKEND": "file", "KV_FILE_DIR": folder, "META_APP_SECRET": "local-app-secret", "META_GRAPH_API_BASE_URL": graph.baseURL,
                        "AGENT_BACKEND": "http", "AGENT_HTTP_URL": agent.baseURL, "AGENT_TIMEOUT_MS": "25000", "FUNCTION_TIMEOUT_SECONDS": "60",
                        "TURN_CONCURRENCY": "\(concurrency)", "METRICS": "off", "LOG_LEVEL": "warning", "TENANT_SHARE_PER_SECOND": "0",
                    ], stdinFile: eventFile)
                let replies = await graph.messages.count - before
                line(
                    "process, 10 records, \(shape), \(agentSeconds) s agent, \(concurrency) at once",
                    "\(fmt(milliseconds / 1000, 2)) s wall, \(fmt(Double(10) / (milliseconds / 1000), 2)) messages/s, \(replies) replies")
            }
        }
        await agent.shutdown()
    }
    await graph.shutdown()
}

/// The records Lambda's event source would hand `process` for messages SQS gave it.
func lambdaRecords(_ messages: [JSON], queueARN: String) -> [[String: Any]] {
    messages.map { message in
        [
            "messageId": message["MessageId"]?.string ?? UUID().uuidString, "receiptHandle": message["ReceiptHandle"]?.string ?? "",
            "body": message["Body"]?.string ?? "",
            "attributes": [
                "MessageGroupId": message["Attributes"]?["MessageGroupId"]?.string ?? "",
                "ApproximateReceiveCount": message["Attributes"]?["ApproximateReceiveCount"]?.string ?? "1",
            ],
            "eventSource": "aws:sqs", "eventSourceARN": queueARN,
        ]
    }
}

/// The stack on moto that the sections going through SQS share: the four tables (named from
/// `prefix` and a fresh suffix), each business's Instagram account and Page token, a FIFO
/// queue, and the environment a function needs to reach them.
struct MotoStack {
    struct Business {
        let id: String
        let locationId: String
        let instagramId: String
        let pageId: String
        let token: String
    }

    let moto: MotoServer.Connection
    let suffix: String
    let tables: Tables
    let store: DynamoDBStore
    let queueURL: String
    let queue: SQSQueue

    var environment: [String: String] {
        moto.environment.merging([
            "KV_BACKEND": "dynamodb", "DYNAMODB_ENDPOINT": moto.endpoint, "SQS_ENDPOINT": moto.endpoint, "PROCESS_QUEUE_URL": queueURL,
            "DYNAMODB_EXTERNAL_CREDENTIALS_TABLE": tables.credentials.name, "DYNAMODB_PLATFORM_IDENTIFIERS_TABLE": tables.identifiers.name,
            "DYNAMODB_PROCESSED_MESSAGES_TABLE": tables.processedMessages.name, "DYNAMODB_CONVERSATIONS_TABLE": tables.conversations.name,
        ]) { $1 }
    }

    static func start(prefix: String, businesses: [Business], visibilityTimeout: Int = 30) async throws -> MotoStack {
        let moto = try await MotoServer.shared.start()
        let suffix = String(UUID().uuidString.prefix(8).lowercased())
        let tables = Tables(
            credentials: "\(prefix)-credentials-\(suffix)", identifiers: "\(prefix)-identifiers-\(suffix)",
            processedMessages: "\(prefix)-processed-\(suffix)", conversations: "\(prefix)-conversations-\(suffix)")
        let store = DynamoDBStore(transport: NIOHTTPTransport(), region: moto.region, endpoint: moto.endpoint, credentials: moto.credentials)
        for table in tables.all { try await store.createTable(table) }
        for business in businesses {
            try await store.put(
                tables.identifiers,
                item: [
                    "identifierId": .s(business.instagramId), "identifierType": .s("instagram_account"), "platform": .s("instagram"),
                    "businessId": .s(business.id), "locationId": .s(business.locationId),
                    "businessLocationId": .s("\(business.id)#\(business.locationId)"),
                ])
            try await store.put(
                tables.credentials,
                item: [
                    "businessId": .s(business.id), "serviceType": .s("meta"), "isActive": .bool(true),
                    "credentials": .m(["accessToken": .s(business.token), "pageId": .s(business.pageId)]),
                ])
        }
        let admin = SQSQueue(transport: NIOHTTPTransport(), queueURL: "", region: moto.region, endpoint: moto.endpoint, credentials: moto.credentials)
        let queueURL = try await admin.createFIFOQueue(name: "\(prefix)-\(suffix).fifo", visibilityTimeout: visibilityTimeout)
        let queue = SQSQueue(transport: NIOHTTPTransport(), queueURL: queueURL, region: moto.region, endpoint: moto.endpoint, credentials: moto.credentials)
        return MotoStack(moto: moto, suffix: suffix, tables: tables, store: store, queueURL: queueURL, queue: queue)
    }

    /// The demo business of the sample events.
    static let demo = Business(id: "B0100001", locationId: "L0100001", instagramId: "17841400000000001", pageId: "102030405060708", token: "local-page-token")
}

// MARK: receive with RECEIVE_DISPATCH=sqs against moto (DynamoDB and SQS)
if wants("sqs") {
    let stack = try await MotoStack.start(prefix: "bench", businesses: [MotoStack.demo])
    let suffix = stack.suffix
    // Graph is never called: the messages go to the queue.
    let graph = try await GraphStandIn()
    let loop = try await ReceiveLoop.start(
        binDir: binDir, graph: graph,
        environment: stack.environment.merging(["RECEIVE_DISPATCH": "sqs"]) { $1 }, fileStore: false)
    let signature = WebhookSignature(appSecret: "local-app-secret")
    func event(_ index: Int) -> [UInt8] {
        instagramWebhook(mid: "m_sqs_\(index)_\(suffix)", sender: "c\(index % 7)", timestamp: index, signature: signature)
    }
    let (latencies, _, answers) = await loop.time(warmUp: (0..<10).map(event), events: (0..<200).map { event(100 + $0) })
    var statuses: [Int: Int] = [:]
    for body in answers {
        if let status = (try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any])?["statusCode"] as? Int {
            statuses[status, default: 0] += 1
        }
    }
    line(
        "receive answering Meta, sqs dispatch, moto: median / p99",
        "\(fmt(median(latencies))) ms / \(fmt(percentile(latencies, 0.99))) ms (statuses \(statuses))")
    await loop.stop()
    await graph.shutdown()
}

// MARK: the AWS requests each message costs, from a traced run against moto (issue 23)
if wants("requests") {
    print("\n## AWS requests per message (moto's recorder on a traced run)")
    let stack = try await MotoStack.start(prefix: "trace", businesses: [MotoStack.demo])
    let (moto, suffix, queue) = (stack.moto, stack.suffix, stack.queue)
    let stream = "trace-conversations-\(suffix)"
    try await KinesisReader(moto).createStream(stream)
    let graph = try await demoGraph()
    let environment = stack.environment.merging(["CONVERSATION_STREAM": stream, "KINESIS_ENDPOINT": moto.endpoint, "METRICS": "on"]) { $1 }
    let recorder = NIOHTTPTransport()
    func recording(_ action: String) async throws -> String {
        let answer = try await recorder.send(
            OutboundRequest(method: action == "download" ? "GET" : "POST", url: "\(moto.endpoint)/moto-api/recorder/\(action)-recording"),
            timeout: .seconds(10))
        return String(decoding: answer.body, as: UTF8.self)
    }
    /// Requests by action (`DynamoDB_20120810.GetItem`, `AmazonSQS.SendMessageBatch`, ...).
    func actions(_ recording: String) -> [String: Int] {
        var counts: [String: Int] = [:]
        for line in recording.split(separator: "\n") {
            guard let entry = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                let headers = entry["headers"] as? [String: String]
            else { continue }
            let target = headers.first { $0.key.lowercased() == "x-amz-target" }?.value ?? "(no target)"
            // DynamoDB's requests by table too (the table's name without the run's suffix).
            let raw = (entry["body"] as? String).flatMap { entry["body_encoded"] as? Bool == true ? Data(base64Encoded: $0) : Data($0.utf8) }
            let body = raw.flatMap { try? JSONSerialization.jsonObject(with: $0) as? [String: Any] }
            let table = (body?["TableName"] as? String).map { " " + $0.replacingOccurrences(of: "-\(suffix)", with: "") } ?? ""
            counts[target + table, default: 0] += 1
        }
        return counts
    }
    func report(_ label: String, _ counts: [String: Int], messages: Int) {
        line(label, "\(counts.values.reduce(0, +)) requests for \(messages) messages")
        for (action, count) in counts.sorted(by: { $0.key < $1.key }) {
            line("  \(action)", "\(fmt(Double(count) / Double(messages), 2)) per message")
        }
    }
    let signature = WebhookSignature(appSecret: "local-app-secret")
    // 30 messages from 10 customers (each writes three times), one webhook each, as Meta sends them.
    let count = 30
    func event(_ index: Int, _ mode: String) -> [UInt8] {
        instagramWebhook(mid: "m_trace_\(mode)_\(index)_\(suffix)", sender: "c\(mode)\(index % 10)", timestamp: 1_000 + index, signature: signature)
    }

    // What CloudWatch Logs is sent at LOG_LEVEL=info: every line each function writes (the
    // JSON log and the EMF metrics, both on stderr).
    let logs = NSTemporaryDirectory() + "trace-logs-\(suffix)"
    // Each customer has a profile Meta answers with (the common case: a lookup that fails
    // writes a log line more).
    for mode in ["inline", "sqs"] {
        for customer in 0..<10 { await graph.setProfile(of: "c\(mode)\(customer)", ["name": "Customer \(customer)", "username": "customer.\(customer)"]) }
    }
    for mode in ["inline", "sqs"] {
        let loop = try await ReceiveLoop.start(
            binDir: binDir, graph: graph, environment: environment.merging(["RECEIVE_DISPATCH": mode, "LOG_LEVEL": "info"]) { $1 }, fileStore: false,
            stderrFile: "\(logs)-receive-\(mode)")
        _ = try await recording("reset")
        _ = try await recording("start")
        _ = await loop.time(warmUp: [], events: (0..<count).map { event($0, mode) })
        _ = try await recording("stop")
        await loop.stop()
        report("receive, RECEIVE_DISPATCH=\(mode), as deployed", actions(try await recording("download")), messages: count)
        line("  log bytes (LOG_LEVEL=info, metrics on)", "\(fileSize("\(logs)-receive-\(mode)") / count) per message")
    }

    // `process` on what the sqs run queued, in batches of up to 10 as the event source hands them.
    var messages: [JSON] = []
    for _ in 0..<20 where messages.count < count { messages += try await queue.receive() }
    _ = try await recording("reset")
    _ = try await recording("start")
    var start = 0
    while start < messages.count {
        let batch = messages[start..<min(start + 10, messages.count)]
        let records: [[String: Any]] = batch.map { message in
            [
                "messageId": message["MessageId"]?.string ?? UUID().uuidString, "receiptHandle": message["ReceiptHandle"]?.string ?? "",
                "body": message["Body"]?.string ?? "",
                "attributes": ["MessageGroupId": message["Attributes"]?["MessageGroupId"]?.string ?? ""],
                "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:\(moto.region):123456789012:trace-\(suffix).fifo",
            ]
        }
        let event = NSTemporaryDirectory() + "trace-event-\(UUID().uuidString).json"
        try JSONSerialization.data(withJSONObject: ["Records": records]).write(to: URL(fileURLWithPath: event))
        _ = try timeProcess(
            "\(binDir)/process",
            environment: environment.merging(["META_APP_SECRET": "local-app-secret", "META_GRAPH_API_BASE_URL": graph.baseURL, "LOG_LEVEL": "info"]) { $1 },
            stdinFile: event, stderrFile: "\(logs)-process")
        start += 10
    }
    _ = try await recording("stop")
    report("process, batches of up to 10 (\(messages.count) records)", actions(try await recording("download")), messages: max(1, messages.count))
    line("  log bytes (LOG_LEVEL=info, metrics on)", "\(fileSize("\(logs)-process") / max(1, messages.count)) per message")
    line("  replies sent by all runs", "\(await graph.messages.count)")
    await graph.shutdown()
}

// MARK: fairness: one tenant sending 20 times more than nine others (issue 23)
if wants("fairness") {
    print("\n## fairness between tenants (receive with sqs dispatch, 3 concurrent process pollers, moto)")
    let graph = try await GraphStandIn()
    // An agent that takes 500 ms, as a model does: answering is then far dearer than passing a
    // message over, as it is in production (with the echo agent and loopback Graph, a batch
    // answered costs this machine what a batch sent back does: a process start and moto).
    let agent = try await LoopbackServer { _ in
        try? await Task.sleep(for: .milliseconds(500))
        return .json(200, #"{"reply":"Thanks, we will get back to you."}"#)
    }
    let tenants = 10
    func instagramId(_ tenant: Int) -> String { "1784140000001\(String(format: "%02d", tenant))" }
    let businesses = (0..<tenants).map { tenant in
        MotoStack.Business(
            id: "B0F000\(String(format: "%02d", tenant))", locationId: "L1", instagramId: instagramId(tenant),
            pageId: "2030405060700\(String(format: "%02d", tenant))", token: "fair-token-\(tenant)")
    }
    let stack = try await MotoStack.start(prefix: "fair", businesses: businesses, visibilityTimeout: 60)
    for business in businesses { await graph.allow(token: business.token, accounts: [business.pageId, business.instagramId]) }
    let (moto, suffix, queue) = (stack.moto, stack.suffix, stack.queue)
    let environment = stack.environment.merging([
        "RECEIVE_DISPATCH": "sqs", "META_APP_SECRET": "local-app-secret",
        "META_GRAPH_API_BASE_URL": graph.baseURL, "LOG_LEVEL": "warning", "METRICS": "off", "SENDER_ACTIONS": "off",
        "AGENT_BACKEND": "http", "AGENT_HTTP_URL": agent.baseURL, "AGENT_HTTP_SECRET": benchAgentSecret,
    ]) { $1 }
    // Tenant 0 sends 200 messages, tenants 1 to 9 ten each, in a shuffled order; each message
    // from a customer of its own (a conversation each).
    var arrivals: [(tenant: Int, customer: String)] = (0..<200).map { (0, "t0c\($0)") }
    for tenant in 1..<tenants { arrivals += (0..<10).map { (tenant, "t\(tenant)c\($0)") } }
    var generator = SystemRandomNumberGenerator()
    arrivals.shuffle(using: &generator)
    let signature = WebhookSignature(appSecret: "local-app-secret")
    func webhook(_ tenant: Int, _ customer: String, _ index: Int) -> [UInt8] {
        let body =
            #"{"object":"instagram","entry":[{"id":"\#(instagramId(tenant))","time":1,"messaging":[{"sender":{"id":"\#(customer)"},"recipient":{"id":"\#(instagramId(tenant))"},"timestamp":\#(index),"message":{"mid":"m_fair_\#(customer)_\#(suffix)","text":"hello"}}]}]}"#
        let object: [String: Any] = [
            "version": "2.0", "rawPath": "/webhooks/meta", "headers": ["x-hub-signature-256": signature.header(for: Array(body.utf8))],
            "requestContext": ["http": ["method": "POST"]], "body": body, "isBase64Encoded": false,
        ]
        return Array((try? JSONSerialization.data(withJSONObject: object)) ?? Data())
    }
    /// Runs the arrivals through `receive`, with the pollers running all along (`burst`
    /// false: a steady stream) or started once everything is queued (`burst`: a peak, where the
    /// order the queue hands messages out decides who waits). Latency runs from a message's
    /// acceptance (steady) or from the pollers' start (burst) to its reply reaching Meta.
    /// `share` is process's TENANT_SHARE_PER_SECOND (0: none).
    func run(_ arrivals: [(tenant: Int, customer: String)], burst: Bool, share: Int, label: String) async throws {
        let environment = environment.merging(["TENANT_SHARE_PER_SECOND": "\(share)"]) { $1 }
        let before = await graph.messages.count
        let loop = try await ReceiveLoop.start(binDir: binDir, graph: graph, environment: environment, fileStore: false)
        let accepted = Mutex<[String: ContinuousClock.Instant]>([:])
        let deferred = Mutex(0)
        let done = Mutex(false)
        let go = Mutex(!burst)
        // Three pollers, as Lambda's event source would run three `process` at once: each
        // takes up to 10 messages, runs `process` on them, and deletes those it did not report
        // as batch item failures (those come back when their visibility timeout ends: the one
        // `process` set, or the queue's 60 s).
        let pollers = (0..<3).map { poller in
            Task {
                var batches = 0
                while !done.withLock({ $0 }) {
                    guard go.withLock({ $0 }), let messages = try? await queue.receive(max: 10), !messages.isEmpty else {
                        try? await Task.sleep(for: .milliseconds(20))
                        continue
                    }
                    let records = lambdaRecords(messages, queueARN: "arn:aws:sqs:\(moto.region):123456789012:fair-\(suffix).fifo")
                    let event = NSTemporaryDirectory() + "fair-\(suffix)-\(label.prefix(5))-\(poller)-\(batches).json"
                    let answer = event + ".out"
                    batches += 1
                    try? JSONSerialization.data(withJSONObject: ["Records": records]).write(to: URL(fileURLWithPath: event))
                    _ = try? await Executables.offPool {
                        try timeProcess("\(binDir)/process", environment: environment, stdinFile: event, stdoutFile: answer)
                    }
                    let output = (try? Data(contentsOf: URL(fileURLWithPath: answer))).flatMap { try? JSONSerialization.jsonObject(with: $0) }
                    let failed = Set(
                        ((output as? [String: Any])?["batchItemFailures"] as? [[String: Any]] ?? []).compactMap { $0["itemIdentifier"] as? String })
                    deferred.withLock { $0 += failed.count }
                    try? await queue.delete(
                        receiptHandles: messages.filter { !failed.contains($0["MessageId"]?.string ?? "") }.compactMap { $0["ReceiptHandle"]?.string })
                }
            }
        }
        let start = ContinuousClock.now
        for (index, arrival) in arrivals.enumerated() {
            _ = await loop.time(warmUp: [], events: [webhook(arrival.tenant, arrival.customer, index)])
            accepted.withLock { $0[arrival.customer] = .now }
            // A steady stream stays under what the pollers answer (about 6 a second).
            if !burst { try await Task.sleep(for: .milliseconds(200)) }
        }
        let received = ContinuousClock.now - start
        let drainStart = ContinuousClock.now
        go.withLock { $0 = true }
        let deadline = ContinuousClock.now + .seconds(300)
        while await graph.messages.count - before < arrivals.count, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(100)) }
        let drained = ContinuousClock.now - drainStart
        done.withLock { $0 = true }
        for poller in pollers { await poller.value }
        await loop.stop()
        let replies = await graph.messages.dropFirst(before)
        var latencies: [Int: [Double]] = [:]
        let acceptedAt = accepted.withLock { $0 }
        func ms(_ duration: Duration) -> Double { Double(duration.components.seconds) * 1000 + Double(duration.components.attoseconds) / 1e15 }
        for reply in replies {
            guard let customer = (reply.body?["recipient"] as? [String: Any])?["id"] as? String, let at = acceptedAt[customer],
                let tenant = Int(customer.dropFirst().prefix(while: \.isNumber))
            else { continue }
            latencies[tenant, default: []].append(ms(reply.at - (burst ? drainStart : at)))
        }
        line(
            label,
            "\(arrivals.count) accepted in \(fmt(ms(received) / 1000, 1)) s, \(replies.count) replies\(burst ? ", drained in \(fmt(ms(drained) / 1000, 1)) s" : ""), \(deferred.withLock { $0 }) records sent back"
        )
        let heavy = latencies[0] ?? []
        let light = (1..<tenants).flatMap { latencies[$0] ?? [] }
        if !heavy.isEmpty {
            line("  tenant 0 (200 messages): median / p99", "\(fmt(median(heavy), 0)) ms / \(fmt(percentile(heavy, 0.99), 0)) ms")
        }
        line("  tenants 1-9 (10 each): median / p99", "\(fmt(median(light), 0)) ms / \(fmt(percentile(light, 0.99), 0)) ms")
        let worst = (1..<tenants).map { percentile(latencies[$0] ?? [], 0.99) }.max() ?? 0
        line("  the worst light tenant's p99", "\(fmt(worst, 0)) ms")
    }
    try await run(arrivals, burst: false, share: 10, label: "steady (shuffled, about 4 a second; from acceptance), share 10/s")
    // The peak: tenant 0's flood arrives first, then the others; all queued before the pollers start.
    var flood: [(tenant: Int, customer: String)] = (0..<200).map { (0, "t0f\($0)") }
    for index in 0..<10 { for tenant in 1..<tenants { flood.append((tenant, "t\(tenant)f\(index)")) } }
    // The baseline: the same peak without tenant 0's flood, what the others' own messages cost.
    try await run(flood.filter { $0.tenant != 0 }.map { ($0.tenant, $0.customer + "b") }, burst: true, share: 0, label: "peak without tenant 0 (the baseline)")
    try await run(flood, burst: true, share: 0, label: "peak (tenant 0 first; from drain start), no share")
    // Three pollers answering turns of 500 ms answer about 6 messages a second here; a share of
    // 2 a second is a third of that, as the default 10 is of 50 executions answering about 40.
    try await run(flood.map { ($0.tenant, $0.customer + "s") }, burst: true, share: 2, label: "peak, share 2/s")
    await agent.shutdown()
    await graph.shutdown()
}

// MARK: what "seen" and "typing" add to a reply (issue 16)
if wants("signals") {
    print("\n## conversation signals: seen and typing")
    // Meta is reached over the internet: every Graph answer here leaves 80 ms after its
    // request (an assumed round trip from an AWS region to graph.facebook.com).
    let graph = try await demoGraph()
    await graph.setLatency(.milliseconds(80))
    // An AI agent that takes 600 ms, and the echo agent that takes none.
    let agent = try await LoopbackServer { _ in
        try? await Task.sleep(for: .milliseconds(600))
        return .json(200, #"{"reply":"Sure, a table for two at 8?"}"#)
    }
    let signature = WebhookSignature(appSecret: "local-app-secret")
    func run(senderActions: Bool, agentURL: String?, label: String) async throws -> [Double] {
        var environment = ["SENDER_ACTIONS": senderActions ? "on" : "off"]
        if let agentURL {
            environment["AGENT_BACKEND"] = "http"
            environment["AGENT_HTTP_URL"] = agentURL
            environment["AGENT_HTTP_SECRET"] = benchAgentSecret
        }
        let loop = try await ReceiveLoop.start(binDir: binDir, graph: graph, environment: environment)
        // A new customer every time: each reply also pays the first profile lookup, as the
        // first message of a conversation does.
        func event(_ index: Int) -> [UInt8] {
            instagramWebhook(mid: "m_sig_\(index)_\(UUID().uuidString)", sender: "c\(index)", timestamp: index, signature: signature)
        }
        let (latencies, _, _) = await loop.time(warmUp: (0..<5).map(event), events: (0..<80).map { event(100 + $0) })
        await loop.stop()
        line(label, "median \(fmt(median(latencies))) ms, p99 \(fmt(percentile(latencies, 0.99))) ms")
        return latencies
    }
    for (name, url) in [("echo agent (0 ms)", nil), ("HTTP agent (600 ms)", agent.baseURL)] as [(String, String?)] {
        let off = try await run(senderActions: false, agentURL: url, label: "reply, \(name), Graph 80 ms, SENDER_ACTIONS=off")
        let on = try await run(senderActions: true, agentURL: url, label: "reply, \(name), Graph 80 ms, SENDER_ACTIONS=on")
        line(
            "  extra latency of seen + typing, \(name)",
            "median \(fmt(median(on) - median(off))) ms, p99 \(fmt(percentile(on, 0.99) - percentile(off, 0.99))) ms")
    }
    await agent.shutdown()
    await graph.shutdown()
}

// MARK: what the conversation log and the metrics add to one receive invocation (issue 18)
if wants("log") {
    print("\n## conversation log (Kinesis, moto) and metrics (EMF)")
    let graph = try await demoGraph()
    let moto = try await MotoServer.shared.start()
    let reader = KinesisReader(moto)
    let streamName = "bench-conversations-\(UUID().uuidString.prefix(8).lowercased())"
    try await reader.createStream(streamName)
    let signature = WebhookSignature(appSecret: "local-app-secret")
    func run(_ extra: [String: String], label: String) async throws -> (perSecond: Double, median: Double, p99: Double) {
        let loop = try await ReceiveLoop.start(binDir: binDir, graph: graph, environment: extra.merging(["SENDER_ACTIONS": "off"]) { $1 })
        func event(_ index: Int) -> [UInt8] { instagramWebhook(mid: "m_log_\(index)_\(UUID().uuidString)", timestamp: index, signature: signature) }
        let count = 200
        let (latencies, seconds, _) = await loop.time(warmUp: (0..<10).map(event), events: (0..<count).map { event(100 + $0) })
        await loop.stop()
        let result = (Double(count) / seconds, median(latencies), percentile(latencies, 0.99))
        line(label, "\(fmt(result.0, 0)) webhooks/s; answer median \(fmt(result.1)) ms, p99 \(fmt(result.2)) ms")
        return result
    }
    let bare = try await run(["METRICS": "off"], label: "receive, Lambda loop, file store: no log, METRICS=off")
    let metrics = try await run(["METRICS": "on"], label: "  with EMF metrics")
    let logged = try await run(
        moto.environment.merging(["METRICS": "on", "CONVERSATION_STREAM": streamName, "KINESIS_ENDPOINT": moto.endpoint]) { $1 },
        label: "  with EMF metrics and the Kinesis log (moto)")
    line(
        "  cost per invocation: metrics / metrics + log",
        "\(fmt(1000 / metrics.perSecond - 1000 / bare.perSecond)) ms / \(fmt(1000 / logged.perSecond - 1000 / bare.perSecond)) ms (throughput), answer median +\(fmt(metrics.median - bare.median)) / +\(fmt(logged.median - bare.median)) ms"
    )
    line("  records on the stream", "\(try await reader.records(streamName).count) (2 per webhook: accepted, reply.sent)")
    await graph.shutdown()
}

struct SpawnError: Error { let path: String }

// MARK: a campaign: 10,000 messages to one account in 10 minutes beside nine trickles (issue 33)
if wants("campaign") {
    // Figures of a deployed shape: `receive` (sqs dispatch) and twelve `process` execution
    // environments, each in its Lambda loop against a Runtime API stand-in, fed by pollers
    // that do what Lambda's event source does (up to 10 records, the partial batch response,
    // delete the rest) with the product's defaults (a share of 50 a second);
    // moto for DynamoDB and SQS; the Graph stand-in answering after 80 ms
    // and holding every account to Meta's Send API limit (300 calls a second); an HTTP agent
    // answering after 1 s. Business 0 runs the campaign (BENCH_CAMPAIGN_MESSAGES, 10,000 by
    // default, spread evenly over BENCH_CAMPAIGN_SECONDS, 600), each from a customer of its
    // own; businesses 1 to 9 each get a message every 10 s. The baseline is the same trickle
    // alone for 60 s. Latency: from the webhook's acceptance to the reply reaching "Meta".
    let settings = ProcessInfo.processInfo.environment
    let campaignMessages = Int(settings["BENCH_CAMPAIGN_MESSAGES"] ?? "") ?? 10_000
    let campaignSeconds = Double(settings["BENCH_CAMPAIGN_SECONDS"] ?? "") ?? 600
    let environments = 12
    print("\n## a campaign (\(campaignMessages) messages to one account in \(Int(campaignSeconds)) s) beside nine trickles")
    let graph = try await GraphStandIn()
    await graph.setLatency(.milliseconds(80))
    await graph.limitSends(perSecond: 300)
    let agent = try await LoopbackServer { _ in
        try? await Task.sleep(for: .seconds(1))
        return .json(200, #"{"reply":"Here is your link: https://example.com/offer"}"#)
    }
    let tenants = 10
    func instagramId(_ tenant: Int) -> String { "1784140000002\(String(format: "%02d", tenant))" }
    func pageId(_ tenant: Int) -> String { "3030405060700\(String(format: "%02d", tenant))" }
    let businesses = (0..<tenants).map { tenant in
        MotoStack.Business(
            id: "B0C000\(String(format: "%02d", tenant))", locationId: "L1", instagramId: instagramId(tenant), pageId: pageId(tenant),
            token: "campaign-token-\(tenant)")
    }
    let stack = try await MotoStack.start(prefix: "campaign", businesses: businesses, visibilityTimeout: 60)
    for business in businesses { await graph.allow(token: business.token, accounts: [business.pageId, business.instagramId]) }
    let (moto, suffix, queue) = (stack.moto, stack.suffix, stack.queue)
    let environment = stack.environment.merging([
        "RECEIVE_DISPATCH": "sqs", "META_APP_SECRET": "local-app-secret", "META_GRAPH_API_BASE_URL": graph.baseURL, "LOG_LEVEL": "warning",
        "METRICS": "off", "AGENT_BACKEND": "http", "AGENT_HTTP_URL": agent.baseURL, "AGENT_HTTP_SECRET": benchAgentSecret, "AGENT_TIMEOUT_MS": "25000",
    ]) { $1 }
    let signature = WebhookSignature(appSecret: "local-app-secret")
    func webhook(_ tenant: Int, _ customer: String) -> [UInt8] {
        let body =
            #"{"object":"instagram","entry":[{"id":"\#(instagramId(tenant))","time":1,"messaging":[{"sender":{"id":"\#(customer)"},"recipient":{"id":"\#(instagramId(tenant))"},"timestamp":\#(WallClock.epochMilliseconds()),"message":{"mid":"m_campaign_\#(customer)_\#(suffix)","text":"LINK"}}]}]}"#
        let object: [String: Any] = [
            "version": "2.0", "rawPath": "/webhooks/meta", "headers": ["x-hub-signature-256": signature.header(for: Array(body.utf8))],
            "requestContext": ["http": ["method": "POST"]], "body": body, "isBase64Encoded": false,
        ]
        return Array((try? JSONSerialization.data(withJSONObject: object)) ?? Data())
    }
    func ms(_ duration: Duration) -> Double { Double(duration.components.seconds) * 1000 + Double(duration.components.attoseconds) / 1e15 }

    // The process environments and their pollers, for the whole section.
    var apis: [RuntimeAPIStandIn] = []
    var processes: [Process] = []
    for _ in 0..<environments {
        let api = try await RuntimeAPIStandIn()
        apis.append(api)
        processes.append(
            try ReceiveLoop.launch(binDir: binDir, endpoint: api.endpoint, graph: graph, environment: environment, fileStore: false, function: "process"))
    }
    let done = Mutex(false)
    let billed = Mutex<(batches: Int, records: Int, milliseconds: Double, sentBack: Int)>((0, 0, 0, 0))
    // Lambda's pollers long-poll: one waiting on an empty queue returns as soon as a message
    // comes. moto answers one request at a time here, so a long poll would hold every other
    // caller up, and short polls from twelve pollers would take most of its one core; so a
    // poller that found the queue empty waits (without asking moto) for a ticket, one given
    // per accepted webhook, or for a second (records sent back come back that way).
    let tickets = Mutex(0)
    let pollers = apis.enumerated().map { index, api in
        Task {
            while !done.withLock({ $0 }) {
                guard let messages = try? await queue.receive(max: 10), !messages.isEmpty else {
                    let until = ContinuousClock.now + .seconds(1)
                    while ContinuousClock.now < until, !done.withLock({ $0 }),
                        !tickets.withLock({ count in
                            guard count > 0 else { return false }
                            count -= 1
                            return true
                        })
                    {
                        try? await Task.sleep(for: .milliseconds(10))
                    }
                    continue
                }
                let records = lambdaRecords(messages, queueARN: "arn:aws:sqs:\(moto.region):123456789012:campaign-\(suffix).fifo")
                let event = Array((try? JSONSerialization.data(withJSONObject: ["Records": records])) ?? Data())
                let id = await api.enqueue(event, deadlineIn: 60)
                guard case .response(let body)? = await api.outcome(of: id, timeout: .seconds(90)) else { continue }
                let output = try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any]
                let failed = Set(((output?["batchItemFailures"] as? [[String: Any]]) ?? []).compactMap { $0["itemIdentifier"] as? String })
                let time = await api.serviceTime(of: id).map(ms) ?? 0
                billed.withLock { $0 = ($0.batches + 1, $0.records + messages.count, $0.milliseconds + time, $0.sentBack + failed.count) }
                try? await queue.delete(
                    receiptHandles: messages.filter { !failed.contains($0["MessageId"]?.string ?? "") }.compactMap { $0["ReceiptHandle"]?.string })
            }
            _ = index
        }
    }

    /// Sends the arrivals (seconds from the start, tenant, customer) through `receive` on
    /// time, waits until every one is answered (or 15 minutes more), and returns each
    /// customer's latency by tenant, with the replies each customer got.
    func run(_ arrivals: [(at: Double, tenant: Int, customer: String)], label: String) async throws -> [Int: [Double]] {
        let before = await graph.messages.count
        let loop = try await ReceiveLoop.start(binDir: binDir, graph: graph, environment: environment, fileStore: false)
        var accepted: [String: ContinuousClock.Instant] = [:]
        var statuses: [Int: Int] = [:]
        let start = ContinuousClock.now
        for arrival in arrivals {
            let due = start + .milliseconds(Int64(arrival.at * 1000))
            if due > .now { try await Task.sleep(until: due, clock: .continuous) }
            let (_, _, answers) = await loop.time(warmUp: [], events: [webhook(arrival.tenant, arrival.customer)])
            accepted[arrival.customer] = .now
            tickets.withLock { $0 += 1 }
            let status = answers.first.flatMap { (try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])?["statusCode"] as? Int } ?? 0
            statuses[status, default: 0] += 1
        }
        let received = ContinuousClock.now - start
        let deadline = ContinuousClock.now + .seconds(900)
        while await graph.messages.count - before < arrivals.count, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(200)) }
        let drained = ContinuousClock.now - start
        await loop.stop()
        var latencies: [Int: [Double]] = [:]
        var repliesTo: [String: Int] = [:]
        let tenantOf = Dictionary(arrivals.map { ($0.customer, $0.tenant) }, uniquingKeysWith: { first, _ in first })
        for reply in await graph.messages.dropFirst(before) {
            guard let customer = (reply.body?["recipient"] as? [String: Any])?["id"] as? String, let at = accepted[customer],
                let tenant = tenantOf[customer]
            else { continue }
            repliesTo[customer, default: 0] += 1
            if repliesTo[customer] == 1 { latencies[tenant, default: []].append(ms(reply.at - at)) }
        }
        let once = arrivals.filter { repliesTo[$0.customer] == 1 }.count
        let twice = repliesTo.values.filter { $0 > 1 }.count
        line(
            label,
            "\(arrivals.count) accepted in \(fmt(ms(received) / 1000, 1)) s (statuses \(statuses)), all answered after \(fmt(ms(drained) / 1000, 1)) s")
        line("  answered exactly once / more than once / never", "\(once) / \(twice) / \(arrivals.count - repliesTo.count)")
        return latencies
    }

    var trickle: [(at: Double, tenant: Int, customer: String)] = []
    func trickles(seconds: Double, tag: String) -> [(at: Double, tenant: Int, customer: String)] {
        var arrivals: [(at: Double, tenant: Int, customer: String)] = []
        for tenant in 1..<tenants {
            var at = Double(tenant)
            while at < seconds {
                arrivals.append((at, tenant, "t\(tenant)\(tag)\(arrivals.count)"))
                at += 10
            }
        }
        return arrivals
    }
    trickle = trickles(seconds: 60, tag: "b")
    let baseline = try await run(trickle.sorted { $0.at < $1.at }, label: "baseline: nine businesses, a message each every 10 s, 60 s")
    let baselineLight = (1..<tenants).flatMap { baseline[$0] ?? [] }
    line("  the nine: median / p99", "\(fmt(median(baselineLight), 0)) ms / \(fmt(percentile(baselineLight, 0.99), 0)) ms")

    var arrivals = trickles(seconds: campaignSeconds, tag: "c")
    let spacing = campaignSeconds / Double(max(1, campaignMessages))
    arrivals += (0..<campaignMessages).map { (Double($0) * spacing, 0, "t0c\($0)") }
    arrivals.sort { $0.at < $1.at }
    let billedBefore = billed.withLock { $0 }
    let latencies = try await run(arrivals, label: "the campaign beside the nine")
    let heavy = latencies[0] ?? []
    let light = (1..<tenants).flatMap { latencies[$0] ?? [] }
    line("  business 0 (the campaign): median / p99", "\(fmt(median(heavy), 0)) ms / \(fmt(percentile(heavy, 0.99), 0)) ms")
    line("  the nine: median / p99", "\(fmt(median(light), 0)) ms / \(fmt(percentile(light, 0.99), 0)) ms")
    line("  the nine's p99 against their baseline", "\(fmt(percentile(light, 0.99) / max(1, percentile(baselineLight, 0.99)), 2))x")
    let rates = await graph.sendRates
    let campaignRate = rates[pageId(0)] ?? (most: 0, refused: 0)
    line("  business 0's Send API calls: most in 1 s / refused (300/s)", "\(campaignRate.most) / \(campaignRate.refused)")
    line("  any account's calls refused for the limit", "\(rates.values.map(\.refused).reduce(0, +))")
    let spent = billed.withLock { $0 }
    let batches = spent.batches - billedBefore.batches
    let records = spent.records - billedBefore.records
    line(
        "  process: batches / records per batch / records sent back",
        "\(batches) / \(fmt(Double(records) / Double(max(1, batches)), 1)) / \(spent.sentBack - billedBefore.sentBack)")
    line(
        "  process: billed time per batch / per message answered",
        "\(fmt((spent.milliseconds - billedBefore.milliseconds) / Double(max(1, batches)), 0)) ms / \(fmt((spent.milliseconds - billedBefore.milliseconds) / Double(max(1, arrivals.count)), 0)) ms"
    )
    done.withLock { $0 = true }
    for poller in pollers { await poller.value }
    for process in processes {
        process.terminate()
        process.waitUntilExit()
    }
    for api in apis { await api.shutdown() }
    await agent.shutdown()
    await graph.shutdown()
}

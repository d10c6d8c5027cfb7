// The standing fuzz test (never deployed): structure-aware mutations of every input the
// functions read from outside, each run through the real executable in local mode, against
// the Graph, agent and Bedrock stand-ins. A case fails when its process dies by a signal,
// hangs, exits with anything but 0 or 1, prints anything but one JSON document, or prints a
// secret it was not given. Crashing inputs are kept in Tests/fuzz/crashes and replayed first.
//   fuzz BIN_DIR [--seconds N] [--seed N] [--save]
import Essentials
import Foundation
import SafeJSON
import TestSupport

// MARK: Arguments

var arguments = CommandLine.arguments.dropFirst()
guard let binDirectory = arguments.popFirst() else {
    FileHandle.standardError.write(Data("usage: fuzz BIN_DIR [--seconds N] [--seed N] [--save]\n".utf8))
    exit(2)
}
var seconds = 60.0
var seed = UInt64(Date().timeIntervalSince1970)
var save = false
while let argument = arguments.popFirst() {
    switch argument {
    case "--seconds": seconds = arguments.popFirst().flatMap(Double.init) ?? seconds
    case "--minutes": seconds = (arguments.popFirst().flatMap(Double.init) ?? 1) * 60
    case "--seed": seed = arguments.popFirst().flatMap { UInt64($0) } ?? seed
    case "--save": save = true
    default:
        FileHandle.standardError.write(Data("fuzz: unknown argument \(argument)\n".utf8))
        exit(2)
    }
}
let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
let crashesFolder = root.appendingPathComponent("Tests/fuzz/crashes")
func log(_ text: String) { FileHandle.standardError.write(Data((text + "\n").utf8)) }

// MARK: The world the functions run in

let appSecret = "fuzz-app-secret-5f2c9a1e"
let verifyToken = "local-verify-token"
let stateSecret = "local-state-secret"
let pageToken = "fuzz-page-token-9d41c7e2"
let bedrockSecretKey = "fuzz-aws-secret-key-0b7e"
let secrets = [appSecret, verifyToken, stateSecret, pageToken, bedrockSecretKey, "local-short-user-token", "local-long-user-token", "local-oauth-code"]

let graph = try await GraphStandIn(appSecret: appSecret)
await graph.allow(token: pageToken, accounts: ["102030405060708", "106540352242922"])
await graph.configure(
    OAuthWorld(
        appId: "100000000000001", redirectURI: "http://localhost:3003/external/meta/callback",
        codes: [
            "local-oauth-code": (
                short: "local-short-user-token", long: "local-long-user-token",
                pages: [
                    .init(id: "102030405060708", name: "Demo Bistro", token: pageToken, instagramAccountId: "17841400000000001")
                ]
            )
        ]))

/// The answer the agent and Bedrock stand-ins give to the current case.
actor Answers {
    var agent = LoopbackServer.Response.json(200, #"{"reply":"ok"}"#)
    var bedrock = LoopbackServer.Response.json(200, "")
    func set(agent: LoopbackServer.Response) { self.agent = agent }
    func set(bedrock: LoopbackServer.Response) { self.bedrock = bedrock }
}
let answers = Answers()
let agent = try await LoopbackServer { _ in await answers.agent }
let bedrock = try await LoopbackServer { _ in await answers.bedrock }

/// A folder with the demo tenant's tables (a fresh one now and then: the ledger grows with
/// every case).
func freshStore() throws -> String {
    let directory = NSTemporaryDirectory() + "fuzz-store-\(UUID().uuidString.prefix(8))"
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    let identifiers = try String(contentsOf: root.appendingPathComponent("scripts/local-tenant/meta-platform-identifiers.jsonl"), encoding: .utf8)
    let credentials = try String(contentsOf: root.appendingPathComponent("scripts/local-tenant/business-external-credentials.jsonl"), encoding: .utf8)
        .replacingOccurrences(of: "local-page-token", with: pageToken)
    try identifiers.write(toFile: "\(directory)/meta-platform-identifiers.jsonl", atomically: true, encoding: .utf8)
    try credentials.write(toFile: "\(directory)/business-external-credentials.jsonl", atomically: true, encoding: .utf8)
    return directory
}

let baseEnvironment: [String: String] = [
    "PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin",
    "META_APP_ID": "100000000000001", "META_APP_SECRET": appSecret, "META_WEBHOOK_VERIFY_TOKEN": verifyToken,
    "META_REDIRECT_URI": "http://localhost:3003/external/meta/callback", "OAUTH_STATE_SECRET": stateSecret,
    "META_GRAPH_API_BASE_URL": graph.baseURL, "KV_BACKEND": "file", "LOG_LEVEL": "debug", "FUNCTION_TIMEOUT_SECONDS": "10",
    "AGENT_TIMEOUT_MS": "2000",
    // Instagram Login configured too, its calls (and its webhooks' secret) to the stand-in.
    "INSTAGRAM_APP_ID": "990602627938098", "INSTAGRAM_APP_SECRET": "local-instagram-secret",
    "INSTAGRAM_REDIRECT_URI": "http://localhost:3003/external/instagram/callback", "INSTAGRAM_API_BASE_URL": graph.baseURL,
    "INSTAGRAM_GRAPH_BASE_URL": graph.baseURL,
]

// MARK: Seeds

func event(_ name: String) -> JSONNode? {
    guard let bytes = FileManager.default.contents(atPath: root.appendingPathComponent("events/\(name)").path) else { return nil }
    return try? JSONReader.read(Array(bytes))
}

func webhookBody(_ name: String) -> JSONNode? {
    guard case .string(let body)? = event(name)?["body"] else { return nil }
    return try? JSONReader.read(Array(body.utf8))
}

/// An HTTP API event carrying `body` as Meta sends it, signed with our app secret.
func signedWebhook(_ body: [UInt8], base64: Bool) -> [UInt8] {
    let signature = HMACSHA256.authenticationCode(for: body, key: Array(appSecret.utf8))
        .map { String(format: "%02x", $0) }.joined()
    var out: [UInt8] = []
    JSONText.string(base64 ? Data(body).base64EncodedString() : String(decoding: body, as: UTF8.self), into: &out)
    return Array(
        #"{"version":"2.0","rawPath":"/webhooks/meta","requestContext":{"http":{"method":"POST","path":"/webhooks/meta"}},"headers":{"content-type":"application/json","x-hub-signature-256":"sha256=\#(signature)"},"isBase64Encoded":\#(base64),"body":"#
            .utf8)
        + out + Array("}".utf8)
}

/// The Event Stream frame of one Bedrock chunk (vnd.amazon.eventstream: prelude, headers, CRCs).
func bedrockFrame(payload: [UInt8]) -> [UInt8] {
    var headers: [UInt8] = []
    for (name, value) in [(":event-type", "chunk"), (":content-type", "application/json"), (":message-type", "event")] {
        headers.append(UInt8(name.utf8.count))
        headers += name.utf8
        headers.append(7)
        headers += [UInt8(value.utf8.count >> 8), UInt8(value.utf8.count & 0xFF)]
        headers += value.utf8
    }
    let total = 16 + headers.count + payload.count
    func be(_ value: UInt32) -> [UInt8] { [UInt8(value >> 24), UInt8((value >> 16) & 0xFF), UInt8((value >> 8) & 0xFF), UInt8(value & 0xFF)] }
    var frame = be(UInt32(total)) + be(UInt32(headers.count))
    frame += be(crc32(frame))
    frame += headers + payload
    frame += be(crc32(frame))
    return frame
}

func crc32(_ bytes: [UInt8]) -> UInt32 {
    var crc: UInt32 = 0xFFFF_FFFF
    for byte in bytes {
        crc ^= UInt32(byte)
        for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
    }
    return ~crc
}

// MARK: Targets

/// One kind of input: how a mutated document becomes a run of a function.
struct Target: Sendable {
    enum Kind: Sendable {
        /// The mutated document is the function's event.
        case event
        /// The mutated document is a webhook body, signed and wrapped in an API Gateway event.
        case webhook
        /// The mutated document is the Graph API's answer to `send`'s message.
        case graphAnswer
        /// The mutated document is the HTTP agent's answer to a message `receive` answers.
        case agentAnswer
        /// The mutated document is a Bedrock chunk's payload (in a valid or damaged frame).
        case bedrockAnswer
        /// The mutated document is the last line of the file store's ledger (with or without
        /// its line break) when `receive` answers a message: a damaged or foreign table.
        case tableLine
    }

    let name: String
    let function: String
    let kind: Kind
    let seeds: [JSONNode]
    var environment: [String: String] = [:]
}

let messengerWebhook = webhookBody("messenger-text.json")
let targets: [Target] = [
    Target(
        name: "webhook", function: "receive", kind: .webhook,
        seeds: [
            "instagram-text.json", "instagram-attachment.json", "messenger-text.json", "whatsapp-text.json", "whatsapp-status.json",
            "whatsapp-status-failed.json", "instagram-echo.json", "instagram-comment.json", "page-comment.json",
        ].compactMap(webhookBody)),
    Target(name: "api-gateway", function: "verify", kind: .event, seeds: ["verify.json", "verify-http-api.json"].compactMap(event)),
    Target(name: "auth-url", function: "auth-url", kind: .event, seeds: ["auth-url.json", "instagram-auth-url.json"].compactMap(event)),
    Target(
        name: "oauth-callback", function: "oauth-callback", kind: .event,
        seeds: [
            "oauth-callback.json", "oauth-callback-denied.json", "whatsapp-signup.json", "connect-page.json", "instagram-callback-denied.json",
            "connect-confirm.json",
        ]
        .compactMap(event)),
    Target(
        name: "connections", function: "connections", kind: .event,
        seeds: [
            "connections-disconnect.json", "connections-data-deletion.json", "connections-deletion-status.json", "connections-status.json",
            "connections-settings.json", "connections-settings-put.json",
        ].compactMap(event)),
    Target(
        name: "send", function: "send", kind: .event,
        seeds: [
            "send-instagram.json", "send-whatsapp.json", "send-api-gateway.json", "conversations-pause.json", "conversations-resume.json",
            "conversations-paused.json",
        ].compactMap(event)),
    Target(name: "sqs", function: "process", kind: .event, seeds: ["process-sqs.json", "process-schedule.json"].compactMap(event)),
    Target(name: "refresh", function: "refresh", kind: .event, seeds: ["refresh-schedule.json"].compactMap(event)),
    Target(
        name: "graph-answers", function: "send", kind: .graphAnswer,
        seeds: [
            #"{"recipient_id":"1234567890123456","message_id":"m_1"}"#,
            #"{"messaging_product":"whatsapp","contacts":[{"input":"1","wa_id":"1"}],"messages":[{"id":"wamid.1"}]}"#,
            #"{"error":{"message":"(#100) No matching user found","type":"OAuthException","code":100,"error_subcode":2018001,"fbtrace_id":"AbC"}}"#,
            #"{"error":{"message":"Please reduce the amount of calls","type":"OAuthException","code":32,"is_transient":true,"fbtrace_id":"AbC"}}"#,
        ].compactMap { try? JSONReader.read(Array($0.utf8)) }),
    Target(
        name: "agent-answers", function: "receive", kind: .agentAnswer,
        seeds: [
            #"{"reply":"Sure, a table for two at 8?"}"#, #"{"reply":null}"#, #"{"message":"throttled"}"#,
            #"{"reply":"A colleague will answer.","handoff":true}"#, #"{"handoff":true}"#,
        ].compactMap { try? JSONReader.read(Array($0.utf8)) }, environment: ["AGENT_BACKEND": "http", "AGENT_HTTP_URL": agent.baseURL]),
    Target(
        name: "bedrock-answers", function: "receive", kind: .bedrockAnswer,
        seeds: [
            #"{"bytes":"U3VyZSwgYSB0YWJsZSBmb3IgdHdvIGF0IDg/"}"#, #"{"bytes":"","attribution":{"citations":[]}}"#,
        ].compactMap { try? JSONReader.read(Array($0.utf8)) },
        environment: [
            "AGENT_BACKEND": "bedrock-agent", "BEDROCK_AGENT_ID": "AGENT12345", "BEDROCK_AGENT_ALIAS_ID": "ALIAS12345",
            "BEDROCK_AGENT_ENDPOINT": bedrock.baseURL, "AWS_REGION": "eu-west-1", "AWS_ACCESS_KEY_ID": "AKIAFUZZ0000EXAMPLE",
            "AWS_SECRET_ACCESS_KEY": bedrockSecretKey,
        ]),
    Target(
        name: "table-line", function: "receive", kind: .tableLine,
        seeds: [
            #"{"Item":{"messageId":{"S":"m_seed"},"status":{"S":"answered"},"expiresAt":{"N":"4102444800"},"parts":{"L":[{"S":"m_1"},{"N":"2"}]}}}"#,
            #"{"Deleted":{"messageId":{"S":"m_before"}}}"#, #"{"Item":{"messageId":{"S":"m_b"},"raw":{"B":"AAE="},"tags":{"SS":["a"]},"none":{"NULL":true}}}"#,
        ].compactMap { try? JSONReader.read(Array($0.utf8)) }),
]

/// The ledger line every `tableLine` case starts from, which must survive whatever follows it.
let intactLedgerLine = #"{"Item":{"messageId":{"S":"m_before"},"status":{"S":"answered"}}}"# + "\n"

// MARK: Running one case

struct Failure: Error, CustomStringConvertible {
    let description: String
}

var caseCounter = 0

/// Runs one mutated document through its target; nil when every rule held.
@MainActor func run(_ target: Target, _ mutated: [UInt8], store: String, flip: Bool) async -> Failure? {
    caseCounter += 1
    var environment = baseEnvironment.merging(target.environment) { $1 }
    environment["KV_FILE_DIR"] = store
    var stdin = mutated
    switch target.kind {
    case .event:
        break
    case .webhook:
        stdin = signedWebhook(mutated, base64: flip)
    case .graphAnswer:
        await graph.script(
            [LoopbackServer.Response(status: flip ? 500 : 200, headers: [("Content-Type", "application/json")], body: mutated)],
            pathSuffix: "/messages")
        stdin = Array(#"{"businessId":"B0100001","platform":"instagram","recipientId":"1234567890123456","message":{"text":"hi"}}"#.utf8)
    case .tableLine:
        // A store of its own: the table holds an intact line, then the mutated one.
        guard let caseStore = try? freshStore() else { return Failure(description: "could not make a store") }
        environment["KV_FILE_DIR"] = caseStore
        let ledger = "\(caseStore)/meta-processed-messages.jsonl"
        defer { try? FileManager.default.removeItem(atPath: caseStore) }
        let content = Array(intactLedgerLine.utf8) + mutated + (flip ? [] : [UInt8(ascii: "\n")])
        FileManager.default.createFile(atPath: ledger, contents: Data(content))
        let body =
            #"{"object":"page","entry":[{"id":"102030405060708","time":\#(WallClock.epochMilliseconds()),"messaging":[{"sender":{"id":"42"},"recipient":{"id":"102030405060708"},"timestamp":\#(WallClock.epochMilliseconds()),"message":{"mid":"m_table_\#(caseCounter)","text":"hi"}}]}]}"#
        stdin = signedWebhook(Array(body.utf8), base64: false)
        if let failure = await runProcess(target, environment: environment, stdin: stdin) { return failure }
        // Whatever the line was, the store never rewrote what came before it.
        guard let after = FileManager.default.contents(atPath: ledger), after.starts(with: Array(intactLedgerLine.utf8)) else {
            return Failure(description: "the ledger's intact first line was lost")
        }
        return nil
    case .agentAnswer, .bedrockAnswer:
        if case .agentAnswer = target.kind {
            await answers.set(agent: LoopbackServer.Response(status: flip ? 429 : 200, headers: [("Content-Type", "application/json")], body: mutated))
        } else {
            let frame = bedrockFrame(payload: mutated)
            let body = flip ? Array(frame.prefix(frame.count / 2)) + mutated : frame
            await answers.set(bedrock: LoopbackServer.Response(status: 200, headers: [("Content-Type", "application/vnd.amazon.eventstream")], body: body))
        }
        // A new message each time, so the ledger never answers "duplicate" instead.
        let body =
            #"{"object":"page","entry":[{"id":"102030405060708","time":\#(WallClock.epochMilliseconds()),"messaging":[{"sender":{"id":"42"},"recipient":{"id":"102030405060708"},"timestamp":\#(WallClock.epochMilliseconds()),"message":{"mid":"m_fuzz_\#(caseCounter)_\#(UInt32.random(in: 0...UInt32.max))","text":"hi"}}]}]}"#
        stdin = signedWebhook(Array(body.utf8), base64: false)
    }
    return await runProcess(target, environment: environment, stdin: stdin)
}

/// Runs the target's function on `stdin`; nil when it ended as the contract says (no signal,
/// no hang, exit 0 or 1, one JSON document out, no secret in its output or log).
@MainActor func runProcess(_ target: Target, environment: [String: String], stdin: [UInt8]) async -> Failure? {
    let result: ProcessResult
    do {
        let path = "\(binDirectory)/\(target.function)"
        let (environment, stdin) = (environment, stdin)
        result = try await Executables.offPool { try ChildProcess.run(path, environment: environment, stdin: stdin, timeout: 20) }
    } catch {
        return Failure(description: "could not start \(target.function): \(error)")
    }
    if result.timedOut { return Failure(description: "\(target.function) hung (stopped after 20 s)") }
    if result.signalled { return Failure(description: "\(target.function) died by signal \(result.exitCode)") }
    guard result.exitCode == 0 || result.exitCode == 1 else {
        return Failure(description: "\(target.function) exited \(result.exitCode): \(result.stderr.suffix(300))")
    }
    guard (try? JSONReader.read(Array(result.stdout.utf8), limits: JSONLimits(maxBytes: 64 << 20))) != nil else {
        return Failure(description: "\(target.function) did not print exactly one JSON document: \(result.stdout.prefix(200))")
    }
    let input = String(decoding: stdin, as: UTF8.self)
    for secret in secrets {
        // A secret the input itself carries may come back where the contract says so (the
        // challenge verify echoes); a log line never holds one.
        if result.stderr.contains(secret) { return Failure(description: "\(target.function) logged a secret") }
        if !input.contains(secret), result.stdout.contains(secret) { return Failure(description: "\(target.function) printed a secret") }
    }
    return nil
}

// MARK: Replay the kept crashes, then fuzz

struct Fixture: Codable {
    let target: String
    let input: String
    let note: String?
}

var failures: [(Target, [UInt8], Failure)] = []
var counts: [String: Int] = [:]
var store = try freshStore()

let fixtures = ((try? FileManager.default.contentsOfDirectory(atPath: crashesFolder.path)) ?? []).filter { $0.hasSuffix(".json") }.sorted()
for name in fixtures {
    guard let data = FileManager.default.contents(atPath: crashesFolder.appendingPathComponent(name).path),
        let fixture = try? JSONDecoder().decode(Fixture.self, from: data),
        let target = targets.first(where: { $0.name == fixture.target }),
        let input = Data(base64Encoded: fixture.input)
    else {
        log("fuzz: \(name) is not a readable fixture")
        exit(1)
    }
    for flip in [false, true] {
        if let failure = await run(target, Array(input), store: store, flip: flip) {
            failures.append((target, Array(input), failure))
            log("fuzz: FAILED fixture \(name): \(failure)")
        }
    }
    counts["fixtures", default: 0] += 2
}
log("fuzz: replayed \(fixtures.count) kept inputs; seed \(seed), \(Int(seconds)) s over \(targets.count) targets")

let perTarget = seconds / Double(targets.count)
for (index, target) in targets.enumerated() {
    var mutator = Mutator(seed: seed &+ UInt64(index) &* 7919, seeds: target.seeds)
    let end = Date().addingTimeInterval(perTarget)
    var runs = 0
    while Date() < end {
        if caseCounter % 300 == 299 {
            try? FileManager.default.removeItem(atPath: store)
            store = try freshStore()
        }
        let input = mutator.next()
        let flip = mutator.random.chance(25)
        runs += 1
        if let failure = await run(target, input, store: store, flip: flip) {
            failures.append((target, input, failure))
            log("fuzz: FAILED \(target.name) case \(runs): \(failure)")
        }
    }
    counts[target.name] = runs
    log("fuzz: \(target.name) (\(target.function)): \(runs) cases")
}
try? FileManager.default.removeItem(atPath: store)

// Keep what failed, so it is replayed from now on (with --save, in Tests/fuzz/crashes).
let keepFolder = save ? crashesFolder : URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("fuzz-failures")
for (target, input, failure) in failures.prefix(50) {
    try? FileManager.default.createDirectory(at: keepFolder, withIntermediateDirectories: true)
    let digest = SHA256.hash(input).prefix(6).map { String(format: "%02x", $0) }.joined()
    let fixture = Fixture(target: target.name, input: Data(input).base64EncodedString(), note: failure.description)
    let file = keepFolder.appendingPathComponent("\(target.name)-\(digest).json")
    if let data = try? JSONEncoder().encode(fixture) { try? data.write(to: file) }
    log("fuzz: kept \(file.path)")
}
await graph.shutdown()
await agent.shutdown()
await bedrock.shutdown()
let total = counts.values.reduce(0, +)
print("fuzz: \(total - failures.count) passed, \(failures.count) failed")
exit(failures.isEmpty ? 0 : 1)

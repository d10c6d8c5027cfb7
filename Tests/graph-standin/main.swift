// The Graph API stand-in as a process, for scripts/local and scripts/serve (never deployed):
//   graph-standin TOKEN=ACCOUNT[,ACCOUNT...] ...
// It also plays the Facebook Login side for the demo: the code `local-oauth-code` belongs
// to a person who manages the demo Page (and its Instagram account).
// Prints its base URL on the first line of stdout, then one JSON line per message sent to it.
import Essentials
import Foundation
import TestSupport

let graph = try await GraphStandIn(appSecret: ProcessInfo.processInfo.environment["META_APP_SECRET"] ?? "local-app-secret")
for argument in CommandLine.arguments.dropFirst() {
    let parts = argument.split(separator: "=", maxSplits: 1)
    guard parts.count == 2 else { continue }
    await graph.allow(token: String(parts[0]), accounts: parts[1].split(separator: ",").map(String.init))
}
// WhatsApp Embedded Signup for the demo: the code `local-signup-code` grants the demo WABA
// and its second number. (Configured first: the Facebook Login side answers every other code
// exchange, with Meta's errors for codes it does not know.)
await graph.configure(
    SignupWorld(
        appId: ProcessInfo.processInfo.environment["META_APP_ID"] ?? "100000000000001",
        codes: [
            "local-signup-code": .init(
                businessToken: "local-business-token", grantedWabas: ["102290129340398"],
                numbers: ["102290129340398": [("106540352242923", "+1 555-078-3882")]])
        ]))

await graph.configure(
    OAuthWorld(
        appId: ProcessInfo.processInfo.environment["META_APP_ID"] ?? "100000000000001",
        redirectURI: ProcessInfo.processInfo.environment["META_REDIRECT_URI"] ?? "http://localhost:3003/external/meta/callback",
        codes: [
            "local-oauth-code": (
                short: "local-short-user-token", long: "local-long-user-token",
                pages: [
                    .init(
                        id: "102030405060708", name: "Demo Bistro", token: "local-page-token", instagramAccountId: "17841400000000001",
                        instagramUsername: "demo_bistro")
                ]
            ),
            // A second person's Page, nobody's yet (the browser test's consent page).
            "local-oauth-code-2": (
                short: "local-short-user-token-2", long: "local-long-user-token-2",
                pages: [
                    .init(
                        id: "102030405060799", name: "Cofetăria Dulce", token: "local-page-token-2", instagramAccountId: "17841400000000099",
                        instagramUsername: "cofetaria.dulce")
                ]
            ),
        ]))

// Business Login for Instagram for the demo: the code `local-instagram-code` belongs to a
// professional account with no Facebook Page.
await graph.configure(
    InstagramLoginWorld(
        appId: ProcessInfo.processInfo.environment["INSTAGRAM_APP_ID"] ?? "990602627938098",
        appSecret: ProcessInfo.processInfo.environment["INSTAGRAM_APP_SECRET"] ?? "local-instagram-secret",
        redirectURI: ProcessInfo.processInfo.environment["INSTAGRAM_REDIRECT_URI"] ?? "http://localhost:3003/external/instagram/callback",
        codes: [
            "local-instagram-code": .init(
                userId: "2468013579", accountId: "17841400000000002", username: "demo_bistro_two", shortToken: "local-instagram-short-token",
                longToken: "local-instagram-long-token")
        ]))

// Comments for the demo: the sample events' comments (events/instagram-comment.json,
// events/page-comment.json) take one private reply each, and public replies, while recent.
let comments = await graph.installComments(now: { WallClock.epochSeconds() })
for argument in CommandLine.arguments.dropFirst() {
    let parts = argument.split(separator: "=", maxSplits: 1)
    if parts.count == 2 { comments.allow(token: String(parts[0]), accounts: parts[1].split(separator: ",").map(String.init)) }
}
comments.allow(token: "local-page-token", accounts: ["102030405060708"])
comments.add("17858893269000001", by: "1234567890123456", on: "102030405060708", at: WallClock.epochSeconds())
comments.add("102030405060708_5550001_7770001", by: "6543210987654321", on: "102030405060708", at: WallClock.epochSeconds())

func emit(_ line: String) {
    try? FileHandle.standardOutput.write(contentsOf: Data((line + "\n").utf8))
}
emit(graph.baseURL)
var printed = 0
while true {
    let messages = await graph.messages
    for message in messages.dropFirst(printed) {
        emit(String(decoding: message.rawBody, as: UTF8.self))
    }
    printed = messages.count
    try await Task.sleep(for: .milliseconds(20))
}

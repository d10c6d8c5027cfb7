import Essentials
import Foundation
import KeyValueStore
import MetaMessaging
import MetaWebhooks
import TestSupport
import Testing

/// `send` as a process, against the Graph stand-in and both store backends.
@Suite struct SendTests {
    typealias H = FunctionHarness

    static func input(_ platform: String = "instagram", recipient: String? = "1234567890123456", message: [String: Any], extra: [String: Any] = [:]) -> [UInt8]
    {
        var object: [String: Any] = ["businessId": "B0100001", "platform": platform, "message": message]
        if let recipient { object["recipientId"] = recipient }
        object.merge(extra) { $1 }
        return Array((try? JSONSerialization.data(withJSONObject: object)) ?? Data())
    }

    @Test(arguments: StoreBackend.allCases)
    func sampleEventsSendTheDocumentedRequests(_ backend: StoreBackend) async throws {
        let harness = try await H.make(backend)
        let instagram = try await harness.run("send", TestEvents.load("send-instagram.json"))
        #expect(instagram.exitCode == 0, "\(instagram.stdout) \(instagram.stderr)")
        #expect(instagram.json?["recipientId"] as? String == "1234567890123456")
        #expect((instagram.json?["messageId"] as? String)?.hasPrefix("m_") == true)
        let whatsapp = try await harness.run("send", TestEvents.load("send-whatsapp.json"))
        #expect(whatsapp.exitCode == 0)
        #expect(whatsapp.json?["recipientId"] as? String == "16505551234")
        #expect((whatsapp.json?["messageId"] as? String)?.hasPrefix("wamid.") == true)
        let gateway = try await harness.run("send", TestEvents.load("send-api-gateway.json"))
        #expect(gateway.exitCode == 0)
        #expect(gateway.statusCode == 200)
        #expect((gateway.bodyJSON?["messageId"] as? String)?.hasPrefix("m_") == true)

        let sent = await harness.graph.messages
        try #require(sent.count == 3)
        #expect(sent[0].path == "/v25.0/\(H.pageId)/messages")
        let igMessage = try #require(sent[0].body?["message"] as? [String: Any])
        #expect(igMessage["text"] as? String == "Your booking for tomorrow at 10:00 is confirmed. Reply here if you need to change it.")
        let replies = try #require(igMessage["quick_replies"] as? [[String: String]])
        #expect(
            replies == [
                ["content_type": "text", "title": "Change time", "payload": "BOOKING_CHANGE"],
                ["content_type": "text", "title": "Cancel", "payload": "BOOKING_CANCEL"],
            ])
        #expect(sent[1].path == "/v25.0/\(H.phoneNumberId)/messages")
        #expect(sent[1].body?["messaging_product"] as? String == "whatsapp")
        #expect(sent[1].body?["recipient_type"] as? String == "individual")
        #expect(sent[1].body?["type"] as? String == "text")
        #expect((sent[1].body?["text"] as? [String: Any])?["body"] as? String == "Reminder: your table for two is booked for Friday at 19:30.")
        // Inside the customer service window (the customer wrote): RESPONSE.
        #expect(sent[2].body?["messaging_type"] as? String == "RESPONSE")
        let attachment = (sent[2].body?["message"] as? [String: Any])?["attachment"] as? [String: Any]
        #expect(attachment?["type"] as? String == "image")
        #expect((attachment?["payload"] as? [String: String])?["url"] == "https://example.com/menu.jpg")
        #expect(sent.allSatisfy { $0.token == H.token })
        await harness.shutdown()
    }

    @Test func everyMessageKindOnEveryPlatform() async throws {
        let harness = try await H.make(.file)
        for type in ["image", "video", "audio", "file"] {
            let result = try await harness.run(
                "send", Self.input("whatsapp", recipient: "1650", message: ["attachment": ["type": type, "url": "https://cdn.example/x"]]))
            #expect(result.exitCode == 0)
        }
        let buttons = try await harness.run(
            "send",
            Self.input(
                "whatsapp", recipient: "1650",
                message: [
                    "text": "Pick one", "quickReplies": [["title": "Yes", "payload": "Y"], ["title": "No", "payload": "N"]],
                ]))
        #expect(buttons.exitCode == 0)
        // Two days after the customer wrote, a person's reply goes with the HUMAN_AGENT tag.
        try await harness.openWindows(at: WallClock.epochSeconds() - 2 * 24 * 3600, customers: [(.messenger, "psid-late")])
        let human = try await harness.run(
            "send", Self.input("messenger", recipient: "psid-late", message: ["text": "A person here"], extra: ["tag": "HUMAN_AGENT", "humanAgent": true]))
        #expect(human.exitCode == 0)
        let response = try await harness.run(
            "send", Self.input("messenger", recipient: "psid", message: ["text": "Thanks"], extra: ["messagingType": "RESPONSE"]))
        #expect(response.exitCode == 0)

        let sent = await harness.graph.messages
        try #require(sent.count == 7)
        #expect(sent[0].body?["type"] as? String == "image")
        #expect((sent[0].body?["image"] as? [String: String])?["link"] == "https://cdn.example/x")
        #expect(sent[1].body?["type"] as? String == "video")
        #expect(sent[2].body?["type"] as? String == "audio")
        #expect(sent[3].body?["type"] as? String == "document")
        #expect((sent[3].body?["document"] as? [String: String])?["link"] == "https://cdn.example/x")
        let interactive = try #require(sent[4].body?["interactive"] as? [String: Any])
        #expect(sent[4].body?["type"] as? String == "interactive")
        #expect(interactive["type"] as? String == "button")
        #expect((interactive["body"] as? [String: String])?["text"] == "Pick one")
        let buttonsSent = ((interactive["action"] as? [String: Any])?["buttons"] as? [[String: Any]]) ?? []
        #expect(buttonsSent.count == 2)
        #expect(buttonsSent.first?["type"] as? String == "reply")
        #expect((buttonsSent.first?["reply"] as? [String: String]) == ["id": "Y", "title": "Yes"])
        #expect(sent[5].body?["messaging_type"] as? String == "MESSAGE_TAG")
        #expect(sent[5].body?["tag"] as? String == "HUMAN_AGENT")
        #expect(sent[6].body?["messaging_type"] as? String == "RESPONSE")
        await harness.shutdown()
    }

    @Test(arguments: [
        ("UnknownPlatform", SendTests.input("telegram", message: ["text": "x"])),
        ("MissingRecipient", SendTests.input(recipient: nil, message: ["text": "x"])),
        ("MissingRecipient", SendTests.input(recipient: "  ", message: ["text": "x"])),
        ("EmptyMessage", SendTests.input(message: [:])),
        ("EmptyMessage", SendTests.input(message: ["text": "   "])),
        ("TextTooLong", SendTests.input(message: ["text": String(repeating: "é", count: 501)])),
        ("TextTooLong", SendTests.input("messenger", message: ["text": String(repeating: "a", count: 2001)])),
        ("TextTooLong", SendTests.input("whatsapp", message: ["text": String(repeating: "a", count: 4097)])),
        ("TooManyQuickReplies", SendTests.input(message: ["text": "x", "quickReplies": (0..<14).map { ["title": "t\($0)", "payload": "p\($0)"] }])),
        (
            "TooManyQuickReplies",
            SendTests.input("whatsapp", message: ["text": "x", "quickReplies": (0..<4).map { ["title": "t\($0)", "payload": "p\($0)"] }])
        ),
        ("InvalidAttachment", SendTests.input(message: ["attachment": ["type": "sticker", "url": "https://x"]])),
        ("InvalidAttachment", SendTests.input(message: ["attachment": ["type": "image", "url": "ftp://x"]])),
        ("InvalidQuickReply", SendTests.input(message: ["text": "x", "quickReplies": [["title": "", "payload": "p"]]])),
        ("InvalidMessage", SendTests.input(message: ["text": "x", "attachment": ["type": "image", "url": "https://x"]])),
        ("InvalidInput", SendTests.input(message: ["text": 42])),
        ("MissingBusinessId", Array(#"{"platform":"instagram","recipientId":"1","message":{"text":"x"}}"#.utf8)),
        ("InvalidInput", Array("{not json".utf8)),
    ])
    func validationErrorsSendNothing(_ errorType: String, _ input: [UInt8]) async throws {
        let harness = try await H.make(.file)
        let result = try await harness.run("send", input)
        #expect(result.exitCode == 1)
        #expect(result.json?["errorType"] as? String == errorType, "\(result.stdout)")
        #expect(await harness.graph.calls.isEmpty)
        await harness.shutdown()
    }

    @Test func limitsAreTheDocumentedOnes() async throws {
        let harness = try await H.make(.file)
        // Exactly at the limit passes: 1000 bytes on Instagram (500 two-byte characters),
        // 2000 characters on Messenger, 4096 on WhatsApp, 13 quick replies.
        #expect(try await harness.run("send", Self.input(message: ["text": String(repeating: "é", count: 500)])).exitCode == 0)
        #expect(try await harness.run("send", Self.input("messenger", message: ["text": String(repeating: "é", count: 2000)])).exitCode == 0)
        #expect(try await harness.run("send", Self.input("whatsapp", message: ["text": String(repeating: "a", count: 4096)])).exitCode == 0)
        #expect(
            try await harness.run("send", Self.input(message: ["text": "x", "quickReplies": (0..<13).map { ["title": "t\($0)", "payload": "p\($0)"] }]))
                .exitCode == 0)
        #expect(await harness.graph.messages.count == 4)
        await harness.shutdown()
    }

    @Test(arguments: StoreBackend.allCases)
    func unknownTenantAndInactiveCredentialsSendNothing(_ backend: StoreBackend) async throws {
        let harness = try await H.make(backend, seedTenant: false)
        let unknown = try await harness.run("send", Self.input(message: ["text": "x"]))
        #expect(unknown.exitCode == 1)
        #expect(unknown.json?["errorType"] as? String == "UnknownTenant")
        try await harness.seedTenant(active: false)
        let inactive = try await harness.run("send", Self.input(message: ["text": "x"]))
        #expect(inactive.json?["errorType"] as? String == "InactiveCredentials")
        let gateway = try await harness.run("send", TestEvents.load("send-api-gateway.json"))
        #expect(gateway.exitCode == 0)
        #expect(gateway.statusCode == 409)
        #expect(await harness.graph.calls.isEmpty)
        await harness.shutdown()
    }

    @Test func transientErrorsAreRetriedThenSucceed() async throws {
        let harness = try await H.make(.file)
        await harness.graph.script(
            [
                GraphStandIn.error(status: 500, code: 2, message: "An unexpected error has occurred. Please retry your request later.", transient: true),
                GraphStandIn.error(status: 500, code: 1, message: "An unknown error occurred", transient: true),
            ], pathSuffix: "/messages")
        let result = try await harness.run("send", Self.input(message: ["text": "x"]))
        #expect(result.exitCode == 0, "\(result.stdout)")
        #expect(await harness.graph.calls.count == 3)
        await harness.shutdown()
    }

    @Test func permanentErrorsAreKeptWholeAndNotRetried() async throws {
        let harness = try await H.make(.file)
        await harness.graph.script([GraphStandIn.error(code: 100, subcode: 2018001, message: "(#100) No matching user found")], pathSuffix: "/messages")
        let result = try await harness.run("send", Self.input(message: ["text": "x"]))
        #expect(result.exitCode == 1)
        #expect(result.json?["errorType"] as? String == "GraphAPIError")
        let message = try #require(result.json?["errorMessage"] as? String)
        #expect(message.contains("code 100"))
        #expect(message.contains("subcode 2018001"))
        #expect(message.contains("No matching user found"))
        #expect(message.contains("AbCdEfGh123"))
        #expect(!message.contains(H.token))
        #expect(!result.stderr.contains(H.token))
        #expect(await harness.graph.calls.count == 1)
        await harness.shutdown()
    }

    @Test(arguments: StoreBackend.allCases)
    func expiredTokenMarksTheCredentialsForReconnection(_ backend: StoreBackend) async throws {
        let harness = try await H.make(backend)
        await harness.graph.script(
            [
                GraphStandIn.error(
                    code: 190, subcode: 460, message: "Error validating access token: The session has been invalidated because the user changed their password."
                )
            ], pathSuffix: "/messages")
        let result = try await harness.run("send", Self.input(message: ["text": "x"]))
        #expect(result.exitCode == 1)
        #expect(result.json?["errorType"] as? String == "TokenExpired", "\(result.stdout)")
        let item = try await harness.credentialsItem()
        #expect(item?["isActive"] == .bool(false))
        #expect(item?["inactiveReason"]?.string == "Graph API code 190 subcode 460")
        #expect(await harness.graph.calls.count == 1)
        let again = try await harness.run("send", Self.input(message: ["text": "x"]))
        #expect(again.json?["errorType"] as? String == "InactiveCredentials")
        #expect(await harness.graph.calls.count == 1)
        await harness.shutdown()
    }
}

// swift-tools-version:6.0
import PackageDescription

// Module layout (see docs/architecture.md, "Inside"):
//   FunctionRuntime   event in, response out, local mode and the Lambda Runtime API loop; knows nothing of Meta
//   SafeJSON          the strict JSON reader (limits, no repeated names) and a Decoder over its tree:
//                     the one way a JSON document from outside is read
//   Essentials        hex, percent and UTC text encodings, the wall clock, header names, the retry pause,
//                     SHA-256 and HMAC-SHA-256: what every module, the runtime too, shares
//   HTTPTransport     the outbound HTTP port (a protocol and its values), no implementation
//   AWSSigning        AWS Signature Version 4, shared by DynamoDB, SQS and Bedrock
//   KeyValueStore     the key-value port, DynamoDB's AttributeValue, the file and DynamoDB backends
//   MetaWebhooks      what Meta sends, read: the webhook's signature, its parser and typed events
//   MetaAgents        the agent port and its backends (echo, HTTP signed, Lambda Invoke, Bedrock)
//   MetaGraph         the Graph API client and the Send API sender, acting for a GraphConnection
//   MetaTenancy       connections, routes, conversations, the message ledger, the shared counters
//   MetaMessaging     the core: config (the composition root), the connect flows, the handlers
//   NIOHTTPTransport  the HTTPTransport adapter on SwiftNIO and NIOSSL (only executables that call out link it,
//                     so `verify` and `auth-url` stay free of SwiftNIO and TLS)
let package = Package(
    name: "meta-messaging",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "verify", targets: ["verify"]),
        .executable(name: "receive", targets: ["receive"]),
        .executable(name: "send", targets: ["send"]),
        .executable(name: "auth-url", targets: ["auth-url"]),
        .executable(name: "oauth-callback", targets: ["oauth-callback"]),
        .executable(name: "process", targets: ["process"]),
        .executable(name: "connections", targets: ["connections"]),
        .executable(name: "refresh", targets: ["refresh"]),
        .executable(name: "serve", targets: ["serve"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        // The outbound HTTP client (NIOHTTPTransport), the local gateway's HTTP server and the
        // tests' loopback stand-ins.
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.0"),
    ],
    targets: [
        .target(name: "GlibcCompat"),
        // The guarded entry point for every JSON document from outside (no Foundation).
        .target(name: "SafeJSON", dependencies: ["Essentials"]),
        // Text encodings, the wall clock, header names, the retry pause: what every module shares.
        .target(name: "Essentials"),
        .target(name: "FunctionRuntime", dependencies: ["GlibcCompat", "Essentials", "SafeJSON", .product(name: "Logging", package: "swift-log")]),
        .target(name: "HTTPTransport", dependencies: ["Essentials"]),
        .target(name: "AWSSigning", dependencies: ["HTTPTransport", "Essentials"]),
        .target(
            name: "KeyValueStore",
            dependencies: [
                "HTTPTransport", "AWSSigning", "SafeJSON",
                .product(name: "Logging", package: "swift-log"),
            ]),
        // What Meta sends, read: the webhook's signature, its events, the product's JSON name.
        .target(name: "MetaWebhooks", dependencies: ["SafeJSON", "Essentials"]),
        // The agents: echo, any HTTP service (signed), a Lambda function, Amazon Bedrock Agents.
        .target(
            name: "MetaAgents",
            dependencies: [
                "MetaWebhooks", "HTTPTransport", "AWSSigning", "SafeJSON", "Essentials",
            ]),
        // The Graph API client: calls, Meta's errors and usage headers, the Send API sender.
        .target(
            name: "MetaGraph",
            dependencies: [
                "MetaWebhooks", "HTTPTransport", "SafeJSON", "Essentials",
                .product(name: "Logging", package: "swift-log"),
            ]),
        // Tenancy and the ledger: connections, routes, conversations, the message ledger, the
        // shared counters, over the key-value port.
        .target(
            name: "MetaTenancy",
            dependencies: [
                "MetaGraph", "MetaAgents", "MetaWebhooks", "KeyValueStore", "Essentials",
                .product(name: "Logging", package: "swift-log"),
            ]),
        // The conversation log (Kinesis) and the metrics (EMF): what every function tells.
        .target(
            name: "MetaTelemetry",
            dependencies: [
                "MetaTenancy", "MetaWebhooks", "FunctionRuntime", "AWSSigning", "HTTPTransport", "Essentials",
                .product(name: "Logging", package: "swift-log"),
            ]),
        // The connect flows: auth-url, the connect page, Facebook Login, Instagram Login, the
        // WhatsApp signup, the person's confirmation, the signed state.
        .target(
            name: "MetaConnect",
            dependencies: [
                "MetaTelemetry", "MetaTenancy", "MetaGraph", "MetaWebhooks", "FunctionRuntime", "KeyValueStore", "HTTPTransport", "SafeJSON",
                "Essentials",
                .product(name: "Logging", package: "swift-log"),
            ]),
        .target(
            name: "MetaMessaging",
            dependencies: [
                "MetaConnect", "MetaTelemetry", "MetaTenancy", "MetaGraph", "MetaAgents", "MetaWebhooks", "FunctionRuntime", "HTTPTransport", "AWSSigning",
                "KeyValueStore", "SafeJSON",
                "Essentials",
                .product(name: "Logging", package: "swift-log"),
            ]),
        .target(
            name: "NIOHTTPTransport",
            dependencies: [
                "HTTPTransport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ]),
        .executableTarget(name: "verify", dependencies: ["MetaMessaging", "FunctionRuntime"]),
        .executableTarget(name: "receive", dependencies: ["MetaMessaging", "FunctionRuntime", "NIOHTTPTransport"]),
        .executableTarget(name: "send", dependencies: ["MetaMessaging", "FunctionRuntime", "NIOHTTPTransport"]),
        .executableTarget(name: "auth-url", dependencies: ["MetaMessaging", "MetaConnect", "FunctionRuntime", "NIOHTTPTransport"]),
        .executableTarget(name: "oauth-callback", dependencies: ["MetaMessaging", "FunctionRuntime", "NIOHTTPTransport"]),
        .executableTarget(name: "process", dependencies: ["MetaMessaging", "FunctionRuntime", "NIOHTTPTransport"]),
        .executableTarget(name: "connections", dependencies: ["MetaMessaging", "FunctionRuntime", "NIOHTTPTransport"]),
        .executableTarget(name: "refresh", dependencies: ["MetaMessaging", "FunctionRuntime", "NIOHTTPTransport"]),
        // The local gateway: every function behind one HTTP server on a developer's machine.
        .target(
            name: "LocalHTTPServer",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ]),
        .executableTarget(
            name: "serve",
            dependencies: [
                "MetaMessaging", "MetaConnect", "MetaWebhooks", "FunctionRuntime", "NIOHTTPTransport", "LocalHTTPServer", "HTTPTransport",
                .product(name: "Logging", package: "swift-log"),
            ]),
        .target(
            name: "TestSupport",
            dependencies: [
                "FunctionRuntime", "AWSSigning", "KeyValueStore", "NIOHTTPTransport", "LocalHTTPServer", "Essentials",
            ], path: "Tests/TestSupport"),
        .executableTarget(name: "kvtool", dependencies: ["KeyValueStore", "Essentials"], path: "Tests/kvtool"),
        .executableTarget(name: "graph-standin", dependencies: ["TestSupport"], path: "Tests/graph-standin"),
        .executableTarget(
            name: "fuzz", dependencies: ["TestSupport", "SafeJSON", "Essentials"], path: "Tests/fuzz",
            exclude: ["crashes"]),
        .executableTarget(
            name: "bench",
            dependencies: [
                "TestSupport", "MetaMessaging", "MetaTenancy", "MetaWebhooks", "FunctionRuntime", .product(name: "Logging", package: "swift-log"),
                "KeyValueStore",
                "AWSSigning",
                "NIOHTTPTransport",
            ], path: "Tests/bench"),
        // One test target per module whose tests need nothing above it; the rest (the handlers,
        // the core's concerns together, the executables as processes) is MetaMessagingTests.
        .testTarget(name: "EssentialsTests", dependencies: ["Essentials", "TestSupport"]),
        .testTarget(name: "SafeJSONTests", dependencies: ["SafeJSON", "Essentials", "KeyValueStore"]),
        .testTarget(
            name: "FunctionRuntimeTests",
            dependencies: ["FunctionRuntime", "SafeJSON", "TestSupport", .product(name: "Logging", package: "swift-log")]),
        .testTarget(name: "AWSSigningTests", dependencies: ["AWSSigning", "HTTPTransport"], resources: [.copy("Fixtures")]),
        .testTarget(
            name: "KeyValueStoreTests",
            dependencies: ["KeyValueStore", "AWSSigning", "HTTPTransport", "NIOHTTPTransport", "Essentials", "TestSupport"]),
        .testTarget(name: "MetaWebhooksTests", dependencies: ["MetaWebhooks", "TestSupport"]),
        .testTarget(
            name: "MetaAgentsTests", dependencies: ["MetaAgents", "MetaWebhooks", "AWSSigning", "HTTPTransport", "NIOHTTPTransport", "TestSupport"]),
        .testTarget(
            name: "MetaGraphTests",
            dependencies: ["MetaGraph", "MetaWebhooks", "NIOHTTPTransport", "TestSupport", .product(name: "Logging", package: "swift-log")]),
        .testTarget(name: "MetaTenancyTests", dependencies: ["MetaTenancy", "MetaWebhooks", "KeyValueStore", "TestSupport"]),
        .testTarget(name: "MetaTelemetryTests", dependencies: ["MetaTelemetry", "MetaWebhooks", "SafeJSON"]),
        .testTarget(name: "MetaConnectTests", dependencies: ["MetaConnect"]),
        .testTarget(
            name: "NIOHTTPTransportTests",
            dependencies: [
                "NIOHTTPTransport", "HTTPTransport", "TestSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ]),
        .testTarget(
            name: "MetaMessagingTests",
            dependencies: [
                "TestSupport", "FunctionRuntime", "HTTPTransport", "AWSSigning", "KeyValueStore", "MetaMessaging", "MetaWebhooks",
                "MetaAgents", "MetaGraph", "MetaTenancy", "MetaTelemetry", "MetaConnect",
                "NIOHTTPTransport", "SafeJSON", "LocalHTTPServer", "Essentials",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ], resources: [.copy("Fixtures")]),
    ]
)

import KeyValueStore
import MetaWebhooks

/// The three tables of the product (SPEC section 7), named by the environment.
public struct Tables: Sendable {
    public let credentials: TableSchema
    public let identifiers: TableSchema
    public let processedMessages: TableSchema
    /// When each customer last wrote (the customer service window).
    public let conversations: TableSchema

    public init(
        credentials: String = "business-external-credentials",
        identifiers: String = "meta-platform-identifiers",
        processedMessages: String = "meta-processed-messages",
        conversations: String = "meta-conversations"
    ) {
        self.credentials = TableSchema(name: credentials, partitionKey: "businessId", sortKey: "serviceType")
        self.identifiers = TableSchema(name: identifiers, partitionKey: "identifierId")
        self.processedMessages = TableSchema(name: processedMessages, partitionKey: "messageId", ttlAttribute: "expiresAt")
        var conversations = TableSchema(name: conversations, partitionKey: "conversationId", ttlAttribute: "expiresAt")
        // Sparse indexes: a business's paused conversations, and the ended pauses whose
        // waiting messages are to be offered to the agent (see `Conversations`).
        conversations.indexes = [
            IndexSchema(name: Conversations.pausedIndex, partitionKey: "pausedBusinessId", sortKey: "pausedUntil"),
            IndexSchema(name: Conversations.offersIndex, partitionKey: "offerShard", sortKey: "offerAt"),
        ]
        self.conversations = conversations
    }

    public var all: [TableSchema] { [credentials, identifiers, processedMessages, conversations] }
}

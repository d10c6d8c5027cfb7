import FunctionRuntime
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

    /// Table names from the environment, each checked against DynamoDB's naming rule (3 to
    /// 255 of `a-z A-Z 0-9 _ - .`, so never a `/`) and never `.` or `..`: with the file backend
    /// a name is a file name, and it must not reach outside the folder.
    public init(environment: Environment) throws(ConfigurationError) {
        func name(_ variable: String, _ fallback: String) throws(ConfigurationError) -> String {
            let value = environment.value(variable, default: fallback)
            guard TableSchema.isValidName(value) else {
                throw ConfigurationError(variable: variable, problem: "must be 3 to 255 letters, digits, '_', '-' or '.' (and not only dots)")
            }
            return value
        }
        self.init(
            credentials: try name("DYNAMODB_EXTERNAL_CREDENTIALS_TABLE", "business-external-credentials"),
            identifiers: try name("DYNAMODB_PLATFORM_IDENTIFIERS_TABLE", "meta-platform-identifiers"),
            processedMessages: try name("DYNAMODB_PROCESSED_MESSAGES_TABLE", "meta-processed-messages"),
            conversations: try name("DYNAMODB_CONVERSATIONS_TABLE", "meta-conversations"))
    }

    public var all: [TableSchema] { [credentials, identifiers, processedMessages, conversations] }
}

import FunctionRuntime
import KeyValueStore

/// The three tables of the product (SPEC section 7), named by the environment.
public struct Tables: Sendable {
    public let credentials: TableSchema
    public let identifiers: TableSchema
    public let processedMessages: TableSchema

    public init(
        credentials: String = "business-external-credentials",
        identifiers: String = "meta-platform-identifiers",
        processedMessages: String = "meta-processed-messages"
    ) {
        self.credentials = TableSchema(name: credentials, partitionKey: "businessId", sortKey: "serviceType")
        self.identifiers = TableSchema(name: identifiers, partitionKey: "identifierId")
        self.processedMessages = TableSchema(name: processedMessages, partitionKey: "messageId", ttlAttribute: "expiresAt")
    }

    public init(environment: Environment) {
        self.init(
            credentials: environment.value("DYNAMODB_EXTERNAL_CREDENTIALS_TABLE", default: "business-external-credentials"),
            identifiers: environment.value("DYNAMODB_PLATFORM_IDENTIFIERS_TABLE", default: "meta-platform-identifiers"),
            processedMessages: environment.value("DYNAMODB_PROCESSED_MESSAGES_TABLE", default: "meta-processed-messages"))
    }

    public var all: [TableSchema] { [credentials, identifiers, processedMessages] }
}

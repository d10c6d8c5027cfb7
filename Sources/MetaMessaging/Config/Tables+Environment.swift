import FunctionRuntime
import KeyValueStore
import MetaTenancy

extension Tables {
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
}

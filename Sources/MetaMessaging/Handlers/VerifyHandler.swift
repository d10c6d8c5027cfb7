import FunctionRuntime
import Logging
import MetaWebhooks

/// `GET /webhooks/meta`: Meta's verification handshake (Meta for Developers, "Webhooks:
/// Getting Started", Verification Requests): `hub.mode=subscribe`, `hub.verify_token`,
/// `hub.challenge`; answer the challenge, and nothing else, when the token matches.
public struct VerifyHandler: Sendable {
    private let verifyToken: [UInt8]

    public init(verifyToken: String) {
        self.verifyToken = Array(verifyToken.utf8)
    }

    public init(environment: Environment) throws(ConfigurationError) {
        self.init(verifyToken: try environment.required("META_WEBHOOK_VERIFY_TOKEN"))
    }

    public func handle(_ request: HTTPRequest, logger: Logger) throws(RequestRefused) -> HTTPResponse {
        guard let mode = request.queryValue("hub.mode"),
            let token = request.queryValue("hub.verify_token"),
            let challenge = request.queryValue("hub.challenge")
        else {
            logger.info("verification refused: missing parameter")
            throw RequestRefused(400, code: .missingParameter, "hub.mode, hub.verify_token and hub.challenge are required")
        }
        guard mode == "subscribe" else {
            logger.info("verification refused: unsupported mode")
            throw RequestRefused(400, code: .unsupportedMode, "hub.mode must be subscribe")
        }
        guard constantTimeEquals(Array(token.utf8), verifyToken) else {
            logger.warning("verification refused: wrong verify token")
            throw RequestRefused(403, code: .forbidden, "the verify token does not match")
        }
        logger.info("verification accepted")
        return HTTPResponse(status: 200, headers: ["Content-Type": "text/plain"], body: challenge)
    }
}

extension VerifyHandler {
    /// The handler as the runtime runs it.
    public var function: HTTPFunction {
        HTTPFunction { request, context in try self.handle(request, logger: context.logger) }
    }
}

import Foundation
import Synchronization

/// Comments and their replies as Meta answers them:
/// - a private reply, `POST /{v}/{page-id or ig-id}/messages` with `{"recipient": {"comment_id"},
///   "message": {"text"}}` → `{"recipient_id": <the commenter>, "message_id"}` (Messenger
///   Platform and Instagram "Private Replies"); one per comment: a second is error 10900
///   "Activity already replied to"; past 7 days from the comment, 10903 "This user can't reply to
///   this activity"; an unknown or deleted comment, 100 with subcode 33;
/// - a public reply, Instagram `POST /{v}/{comment-id}/replies` or Facebook
///   `POST /{v}/{comment-id}/comments` with `message` → `{"id": <the new comment>}`.
public final class CommentBook: Sendable {
    public struct PublicReply: Sendable, Equatable {
        public let commentId: String
        public let id: String
        public let text: String
    }

    struct Comment {
        let author: String
        let account: String
        let createdAt: Int64
    }

    struct State {
        var comments: [String: Comment] = [:]
        var privateReplies: [String: String] = [:]
        var publicReplies: [PublicReply] = []
        var tokens: [String: Set<String>] = [:]
        var counter = 0
    }

    let state = Mutex(State())
    /// The stand-in's clock for the 7 days (epoch seconds).
    let now: @Sendable () -> Int64

    init(now: @escaping @Sendable () -> Int64) {
        self.now = now
    }

    /// A comment by `author` on a post of `account`, written at `createdAt` (epoch seconds).
    public func add(_ id: String, by author: String, on account: String, at createdAt: Int64) {
        state.withLock { $0.comments[id] = Comment(author: author, account: account, createdAt: createdAt) }
    }

    /// The comment already has a private reply (a person sent one by hand).
    public func markReplied(_ id: String) {
        state.withLock { $0.privateReplies[id] = "by hand" }
    }

    public func allow(token: String, accounts: [String]) {
        state.withLock { $0.tokens[token, default: []].formUnion(accounts) }
    }

    /// Comment id → the private reply's text.
    public var privateReplies: [String: String] { state.withLock { $0.privateReplies } }
    public var publicReplies: [PublicReply] { state.withLock { $0.publicReplies } }

    static func gone(_ id: String) -> LoopbackServer.Response {
        GraphStandIn.error(
            code: 100, subcode: 33,
            message:
                "Unsupported post request. Object with ID '\(id)' does not exist, cannot be loaded due to missing permissions, or does not support this operation.",
            type: "GraphMethodException")
    }

    func answer(_ request: LoopbackServer.Request, token: String?) -> LoopbackServer.Response? {
        guard request.method == "POST" else { return nil }
        let parts = request.path.split(separator: "/").map(String.init)
        guard parts.count == 3 else { return nil }
        let body = (try? JSONSerialization.jsonObject(with: Data(request.body))) as? [String: Any]
        return state.withLock { state -> LoopbackServer.Response? in
            switch parts[2] {
            case "messages":
                guard let commentId = (body?["recipient"] as? [String: Any])?["comment_id"] as? String else { return nil }
                guard let token, state.tokens[token]?.contains(parts[1]) == true else {
                    return GraphStandIn.error(code: 190, message: "Invalid OAuth access token - Cannot parse access token")
                }
                guard let comment = state.comments[commentId], comment.account == parts[1] else { return Self.gone(commentId) }
                guard state.privateReplies[commentId] == nil else {
                    return GraphStandIn.error(code: 10900, message: "(#10900) Activity already replied to", type: "OAuthException")
                }
                guard now() - comment.createdAt <= 7 * 24 * 3600 else {
                    return GraphStandIn.error(code: 10903, message: "(#10903) This user can't reply to this activity", type: "OAuthException")
                }
                guard let text = (body?["message"] as? [String: Any])?["text"] as? String, !text.isEmpty else {
                    return GraphStandIn.error(code: 100, message: "(#100) The parameter message is required", type: "OAuthException")
                }
                state.counter += 1
                state.privateReplies[commentId] = text
                return .json(200, #"{"recipient_id":"\#(comment.author)","message_id":"m_PRIVATE\#(state.counter)"}"#)
            case "replies", "comments":
                guard let comment = state.comments[parts[1]] else { return Self.gone(parts[1]) }
                guard let token, state.tokens[token]?.contains(comment.account) == true else {
                    return GraphStandIn.error(code: 190, message: "Invalid OAuth access token - Cannot parse access token")
                }
                guard let text = body?["message"] as? String ?? request.query["message"], !text.isEmpty else {
                    return GraphStandIn.error(code: 100, message: "(#100) The parameter message is required", type: "OAuthException")
                }
                state.counter += 1
                let id = "1790000000000\(state.counter)"
                state.publicReplies.append(PublicReply(commentId: parts[1], id: id, text: text))
                state.comments[id] = Comment(author: comment.account, account: comment.account, createdAt: now())
                return .json(200, #"{"id":"\#(id)"}"#)
            default:
                return nil
            }
        }
    }
}

extension GraphStandIn {
    /// Installs the comment routes; `now` is the stand-in's clock for Meta's 7 days.
    public func installComments(now: @escaping @Sendable () -> Int64) async -> CommentBook {
        let book = CommentBook(now: now)
        await state.addRoute { request, token in book.answer(request, token: token) }
        return book
    }
}

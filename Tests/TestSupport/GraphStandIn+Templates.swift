import Foundation

extension GraphStandIn {
    /// `GET /{v}/{waba-id}/message_templates?fields=&limit=` as the WhatsApp Business Management
    /// API answers it: `{"data": [{"name", "language", "status", "category", "components": [{"type",
    /// "format"?, "text"?}], "id"}], "paging": {"cursors": {"before", "after"}, "next"?}}`, one page
    /// of `pages` at a time from the `after` cursor (cursor-based paging), with the account's token.
    public func serveTemplates(waba: String, token: String, pages: [[[String: Any]]]) async {
        let base = baseURL
        let version = self.version
        let pages: [String] = pages.map { String(decoding: (try? JSONSerialization.data(withJSONObject: $0)) ?? Data("[]".utf8), as: UTF8.self) }
        await state.addRoute { request, given in
            let parts = request.path.split(separator: "/").map(String.init)
            guard request.method == "GET", parts.count == 3, parts[1] == waba, parts[2] == "message_templates" else { return nil }
            guard given == token else { return GraphStandIn.error(code: 190, message: "Invalid OAuth access token - Cannot parse access token") }
            let index = Int(request.query["after"] ?? "0") ?? 0
            guard index < pages.count else { return .json(200, #"{"data":[]}"#) }
            let next =
                index + 1 < pages.count
                ? #","next":"\#(base)/\#(version)/\#(waba)/message_templates?fields=name,language,status,category,components&limit=100&after=\#(index + 1)""#
                : ""
            return .json(200, #"{"data":\#(pages[index]),"paging":{"cursors":{"before":"\#(index)","after":"\#(index + 1)"}\#(next)}}"#)
        }
    }
}

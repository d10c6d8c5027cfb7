import Essentials

/// Decoding of `application/x-www-form-urlencoded` query strings, as API Gateway's
/// `rawQueryString` carries them. Never fails: a malformed escape is kept as it is.
public enum QueryString {
    public static func parse(_ raw: String) -> [String: [String]] {
        var result: [String: [String]] = [:]
        for pair in raw.split(separator: "&", omittingEmptySubsequences: true) {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let name = decode(parts[0])
            guard !name.isEmpty else { continue }
            let value = parts.count > 1 ? decode(parts[1]) : ""
            result[name, default: []].append(value)
        }
        return result
    }

    /// Percent-decodes, with `+` meaning a space. Invalid UTF-8 becomes U+FFFD.
    public static func decode<S: StringProtocol>(_ text: S) -> String {
        FormEncoding.decode(text, plusIsSpace: true)
    }
}

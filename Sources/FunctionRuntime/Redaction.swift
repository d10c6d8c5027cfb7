import Synchronization

/// What every log line passes through before it is written: text from outside (a Graph
/// error message, an agent's answer, a URL) may carry a token or a code, and no log line may.
/// - the configured secrets (app secrets, verify token, state secret, `serve`'s key), wherever
///   they appear;
/// - the value of a query or form parameter that carries a credential (`access_token=`,
///   `client_secret=`, `code=`, `fb_exchange_token=`, `appsecret_proof=`, `pin=`, ...);
/// - a `Bearer` credential;
/// - anything shaped like a Meta access token (`EAA…`, `IGAA…`, `IGQV…`, 32 or more letters
///   and digits).
public struct Redaction: Sendable {
    public static let marker = "[redacted]"
    static let credentialParameters: [String] = [
        "access_token", "client_secret", "code", "fb_exchange_token", "appsecret_proof", "verify_token",
        "hub.verify_token", "pin", "signed_request", "password", "token",
    ]
    private static let credentialParameterBytes: [[UInt8]] = credentialParameters.map { Array($0.utf8) }
    private static let bearerBytes = Array("Bearer ".utf8)
    private static let tokenPrefixes: [[UInt8]] = [Array("EAA".utf8), Array("IGAA".utf8), Array("IGQV".utf8)]

    /// Secret values of this process (shorter ones are not searched for: they would match
    /// ordinary text and are not secrets worth the name).
    public let secrets: [String]

    public init(secrets: [String] = []) {
        self.secrets = secrets.filter { $0.utf8.count >= 8 }.sorted { $0.utf8.count > $1.utf8.count }
    }

    /// The secrets named in the environment that this product reads.
    public init(environment: Environment) {
        self.init(
            secrets: [
                "META_APP_SECRET", "INSTAGRAM_APP_SECRET", "META_WEBHOOK_VERIFY_TOKEN", "OAUTH_STATE_SECRET", "SERVE_API_KEY", "AGENT_HTTP_SECRET",
                "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
            ].compactMap { environment[$0] })
    }

    /// Secrets read after the logs were set up (from AWS Secrets Manager at start-up): every
    /// redaction of the process hides them too.
    private static let remembered = Mutex<[String]>([])

    public static func remember(_ values: [String]) {
        let kept = values.filter { $0.utf8.count >= 8 }
        remembered.withLock { $0 = ($0 + kept).sorted { $0.utf8.count > $1.utf8.count } }
    }

    public func scrub(_ text: String) -> String {
        // The usual log line holds nothing to redact: one pass over its bytes says so.
        var text = Self.mayHoldCredential(text) ? Self.scrubPatterns(text) : text
        for secret in secrets + Self.remembered.withLock({ $0 }) where text.utf8.count >= secret.utf8.count && text.contains(secret) {
            text = text.replacing(secret, with: Self.marker)
        }
        return text
    }

    /// Whether `text` has a `=`, a `Bearer ` or the start of a Meta token (`EAA`, `IGAA`,
    /// `IGQV`): only then can a pattern match.
    static func mayHoldCredential(_ text: String) -> Bool {
        var previous: (UInt8, UInt8) = (0, 0)
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "="): return true
            case UInt8(ascii: "A") where previous.1 == UInt8(ascii: "A") && previous.0 == UInt8(ascii: "E"): return true
            case UInt8(ascii: "A") where previous.1 == UInt8(ascii: "G") && previous.0 == UInt8(ascii: "I"): return true
            case UInt8(ascii: "Q") where previous.1 == UInt8(ascii: "G") && previous.0 == UInt8(ascii: "I"): return true
            case UInt8(ascii: "r") where previous.1 == UInt8(ascii: "e") && previous.0 == UInt8(ascii: "a"): return true
            default: break
            }
            previous = (previous.1, byte)
        }
        return false
    }

    private static func isTokenByte(_ byte: UInt8) -> Bool {
        (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")) || (byte | 0x20 >= UInt8(ascii: "a") && byte | 0x20 <= UInt8(ascii: "z"))
            || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "-")
    }

    private static func isValueEnd(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "&"), UInt8(ascii: " "), UInt8(ascii: "\""), UInt8(ascii: "'"), UInt8(ascii: ","), UInt8(ascii: ";"),
            UInt8(ascii: ")"), UInt8(ascii: "}"), UInt8(ascii: "]"), UInt8(ascii: "\n"), UInt8(ascii: "\r"), UInt8(ascii: "\t"),
            UInt8(ascii: "<"), UInt8(ascii: ">"):
            return true
        default:
            return false
        }
    }

    /// One pass over the bytes: parameters, Bearer credentials and token-shaped words.
    static func scrubPatterns(_ text: String) -> String {
        let bytes = Array(text.utf8)
        let marker = Array(Self.marker.utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var index = 0
        while index < bytes.count {
            let atWordStart = index == 0 || !isTokenByte(bytes[index - 1]) && bytes[index - 1] != UInt8(ascii: ".")
            if atWordStart {
                // name=value for a credential parameter
                var matched = false
                for nameBytes in credentialParameterBytes {
                    let end = index + nameBytes.count
                    guard end < bytes.count, bytes[end] == UInt8(ascii: "="),
                        bytes[index..<end].elementsEqual(nameBytes, by: { $0 | 0x20 == $1 | 0x20 })
                    else { continue }
                    out += bytes[index...end]
                    var valueEnd = end + 1
                    while valueEnd < bytes.count, !isValueEnd(bytes[valueEnd]) { valueEnd += 1 }
                    if valueEnd > end + 1 { out += marker }
                    index = valueEnd
                    matched = true
                    break
                }
                if matched { continue }
                // Bearer <credential>
                let bearer = bearerBytes
                if bytes.count - index > bearer.count, bytes[index..<(index + bearer.count)].elementsEqual(bearer) {
                    out += bearer
                    var valueEnd = index + bearer.count
                    while valueEnd < bytes.count, !isValueEnd(bytes[valueEnd]) { valueEnd += 1 }
                    out += marker
                    index = valueEnd
                    continue
                }
                // A Meta access token: EAA… (Facebook), IGAA… / IGQV… (Instagram)
                var wordEnd = index
                while wordEnd < bytes.count, isTokenByte(bytes[wordEnd]) { wordEnd += 1 }
                if wordEnd - index >= 32 {
                    let word = bytes[index..<wordEnd]
                    if tokenPrefixes.contains(where: { word.starts(with: $0) }) {
                        out += marker
                        index = wordEnd
                        continue
                    }
                }
                if wordEnd > index {
                    out += bytes[index..<wordEnd]
                    index = wordEnd
                    continue
                }
            }
            out.append(bytes[index])
            index += 1
        }
        return String(decoding: out, as: UTF8.self)
    }
}

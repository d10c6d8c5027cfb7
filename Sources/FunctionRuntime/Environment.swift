#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The process environment, read once at start-up and handed to whoever needs it.
public struct Environment: Sendable {
    public let values: [String: String]

    public init(_ values: [String: String]) {
        self.values = values
    }

    /// The environment of this process.
    /// (Split on bytes and sized once: this runs at every cold start and every local run.)
    public static func current() -> Environment {
        var count = 0
        while environ[count] != nil { count += 1 }
        var values: [String: String] = [:]
        values.reserveCapacity(count)
        for index in 0..<count {
            guard let entry = environ[index] else { continue }
            let length = strlen(entry)
            entry.withMemoryRebound(to: UInt8.self, capacity: length) { start in
                let bytes = UnsafeBufferPointer(start: start, count: length)
                guard let equals = bytes.firstIndex(of: UInt8(ascii: "=")) else { return }
                let name = String(decoding: UnsafeBufferPointer(rebasing: bytes[..<equals]), as: UTF8.self)
                values[name] = String(decoding: UnsafeBufferPointer(rebasing: bytes[(equals + 1)...]), as: UTF8.self)
            }
        }
        return Environment(values)
    }

    /// The value if set and not empty.
    public subscript(name: String) -> String? {
        guard let value = values[name], !value.isEmpty else { return nil }
        return value
    }

    public func required(_ name: String) throws(ConfigurationError) -> String {
        guard let value = self[name] else { throw ConfigurationError(variable: name) }
        return value
    }

    public func value(_ name: String, default fallback: String) -> String {
        self[name] ?? fallback
    }

    /// One of a fixed set of choices; anything else is a configuration error naming the variable.
    public func choice(_ name: String, of choices: [String], default fallback: String) throws(ConfigurationError) -> String {
        let value = (self[name] ?? fallback).lowercased()
        guard choices.contains(value) else {
            throw ConfigurationError(variable: name, problem: "must be one of \(choices.joined(separator: ", "))")
        }
        return value
    }

    /// Whether this process runs under the Lambda Runtime API.
    public var isLambda: Bool { self["AWS_LAMBDA_RUNTIME_API"] != nil }
}

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

    /// A whole number in `range`, or `fallback` when unset. Anything else (not a number,
    /// fractional, out of range, overflowing) is a configuration error naming the variable.
    public func integer(_ name: String, in range: ClosedRange<Int64>, default fallback: Int64) throws(ConfigurationError) -> Int64 {
        guard let text = self[name] else { return fallback }
        guard let value = Int64(text), range.contains(value) else {
            throw ConfigurationError(variable: name, problem: "must be a whole number from \(range.lowerBound) to \(range.upperBound)")
        }
        return value
    }

    /// A finite decimal number in `range` (`2.5`, `30`), or `fallback` when unset; `nan`,
    /// `inf`, `1e300`, `abc` and negative numbers are configuration errors naming the variable.
    public func decimal(_ name: String, in range: ClosedRange<Double>, default fallback: Double) throws(ConfigurationError) -> Double {
        guard let text = self[name] else { return fallback }
        let plain = text.utf8.allSatisfy { ($0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9")) || $0 == UInt8(ascii: ".") }
        guard plain, let value = Double(text), value.isFinite, range.contains(value) else {
            throw ConfigurationError(variable: name, problem: "must be a number from \(range.lowerBound) to \(range.upperBound)")
        }
        return value
    }

    /// Whether this process runs under the Lambda Runtime API.
    public var isLambda: Bool { self["AWS_LAMBDA_RUNTIME_API"] != nil }
}

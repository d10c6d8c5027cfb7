import Essentials

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Unbuffered writes to stdout and stderr: each call is one `write(2)` loop, so a JSON line
/// is never interleaved with another thread's and nothing waits in a buffer at `exit`.
public enum Output {
    public static func write(_ bytes: [UInt8], to fd: Int32) {
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { raw in System.write(fd, raw, from: offset) }
            if written < 0 {
                if errno == EINTR { continue }
                return
            }
            offset += written
        }
    }

    public static func stdout(_ bytes: [UInt8]) {
        var line = bytes
        if line.last != UInt8(ascii: "\n") { line.append(UInt8(ascii: "\n")) }
        write(line, to: STDOUT_FILENO)
    }

    public static func stderr(_ text: String) {
        write(Array((text + "\n").utf8), to: STDERR_FILENO)
    }
}

extension Output {
    /// One line on stderr, then exit code 2 (a configuration or usage error).
    public static func fail(_ message: String) -> Never {
        stderr(message)
        exit(2)
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The few system calls whose spelling differs between Linux (glibc, musl) and macOS, in one
/// place, so the package builds on a Mac for local development (`serve`, the tests that need no
/// Linux). Only Linux is tested here; the Darwin branches are kept to the plain calls.
public enum System {
    /// `send` flags that keep a closed peer from raising SIGPIPE: MSG_NOSIGNAL on Linux; on
    /// Darwin the socket carries SO_NOSIGPIPE instead (`noSignalPipe`).
    #if canImport(Darwin)
    public static let sendFlags: Int32 = 0
    #else
    public static let sendFlags = Int32(MSG_NOSIGNAL)
    #endif

    /// Sets SO_NOSIGPIPE where the system has it (Darwin); nothing on Linux.
    public static func noSignalPipe(_ fd: Int32) {
        #if canImport(Darwin)
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, socklen_t(MemoryLayout<Int32>.size))
        #endif
    }

    /// The stream socket type as `addrinfo` wants it.
    #if canImport(Glibc)
    public static let streamSocket = Int32(SOCK_STREAM.rawValue)
    #else
    public static let streamSocket = SOCK_STREAM
    #endif

    public static func socket(_ family: Int32, _ type: Int32, _ proto: Int32) -> Int32 {
        #if canImport(Darwin)
        Darwin.socket(family, type, proto)
        #elseif canImport(Musl)
        Musl.socket(family, type, proto)
        #else
        Glibc.socket(family, type, proto)
        #endif
    }

    public static func connect(_ fd: Int32, _ address: UnsafePointer<sockaddr>?, _ length: socklen_t) -> Int32 {
        #if canImport(Darwin)
        Darwin.connect(fd, address, length)
        #elseif canImport(Musl)
        Musl.connect(fd, address, length)
        #else
        Glibc.connect(fd, address, length)
        #endif
    }

    public static func close(_ fd: Int32) {
        #if canImport(Darwin)
        _ = Darwin.close(fd)
        #elseif canImport(Musl)
        _ = Musl.close(fd)
        #else
        _ = Glibc.close(fd)
        #endif
    }

    /// Writes from `bytes[offset...]` (a send with `sendFlags` on a socket); the count written, or -1.
    public static func write(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, from offset: Int, socket: Bool = false) -> Int {
        guard offset < bytes.count, let start = UnsafeRawBufferPointer(rebasing: bytes[offset...]).baseAddress else { return 0 }
        let count = bytes.count - offset
        #if canImport(Darwin)
        return socket ? Darwin.send(fd, start, count, sendFlags) : Darwin.write(fd, start, count)
        #elseif canImport(Musl)
        return socket ? Musl.send(fd, start, count, sendFlags) : Musl.write(fd, start, count)
        #else
        return socket ? Glibc.send(fd, start, count, sendFlags) : Glibc.write(fd, start, count)
        #endif
    }

    /// Makes the file's data (and the size that reaches it) durable: `fdatasync` on Linux,
    /// `fsync` on Darwin, which has no `fdatasync` in its headers. 0, or -1 with errno set.
    public static func syncData(_ fd: Int32) -> Int32 {
        #if canImport(Darwin)
        Darwin.fsync(fd)
        #elseif canImport(Musl)
        Musl.fdatasync(fd)
        #else
        Glibc.fdatasync(fd)
        #endif
    }

    /// Reads into `buffer[offset...]` (a recv on a socket); the count read, 0 at the end, or -1.
    public static func read(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer, at offset: Int, socket: Bool = false) -> Int {
        guard offset < buffer.count, let start = UnsafeMutableRawBufferPointer(rebasing: buffer[offset...]).baseAddress else { return 0 }
        let count = buffer.count - offset
        #if canImport(Darwin)
        return socket ? Darwin.recv(fd, start, count, 0) : Darwin.read(fd, start, count)
        #elseif canImport(Musl)
        return socket ? Musl.recv(fd, start, count, 0) : Musl.read(fd, start, count)
        #else
        return socket ? Glibc.recv(fd, start, count, 0) : Glibc.read(fd, start, count)
        #endif
    }
}

extension stat {
    /// The modification time, whatever the system calls its field.
    public var modificationTime: timespec {
        #if canImport(Darwin)
        st_mtimespec
        #else
        st_mtim
        #endif
    }
}

/// Whether the running task may wait for the disk on its own thread. Swift's cooperative pool
/// has one thread per core, so in general such a wait (an `fdatasync`: 50 µs on a quiet disk,
/// tens of milliseconds on a busy one) belongs on a thread of its own, and a store hands it to
/// one. A process that does one thing at a time (a function's Lambda loop, or its local run)
/// says so at its edge: no other task is there to be kept waiting, and the hand-off to another
/// thread and back costs more than the wait.
public enum DiskWaits {
    @TaskLocal public static var inPlace = false
}

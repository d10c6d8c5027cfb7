import Foundation

/// A child process started with `posix_spawn`, for the tests and their servers.
///
/// Foundation's `Process` on Linux learns that a child ended when a socket the child inherited
/// reaches end of file, and its pipes are plain `pipe()`s. A child spawned at the same moment on
/// another thread can inherit both (the other spawn lists the descriptors to close before this
/// one creates them). When that other child lives long (moto's harness lives as long as the
/// test process), the first child's pipes never reach end of file and its `Process` never sees
/// it end: the test waits forever, and so does CI. This runner gives the child nothing but its
/// three standard descriptors (`posix_spawn_file_actions_addclosefrom_np`), marks its own
/// descriptors close-on-exec, and learns of the end with `waitpid`.
public final class ChildProcess: @unchecked Sendable {
    public enum Stdio {
        case null
        /// Appends to this file.
        case file(URL)
        /// A pipe whose other end the caller gets.
        case pipe
    }

    public let processIdentifier: pid_t
    private let lock = NSLock()
    private var status: Int32?

    /// The parent's ends of the pipes asked for (close-on-exec), or -1; they are closed with
    /// the object (`closeStdin()` closes the first earlier). Never close them yourself: the
    /// number would be closed twice, and the second time it may be another's (NIO's) socket.
    public private(set) var stdinWriter: Int32
    public let stdoutReader: Int32
    public let stderrReader: Int32

    public init(
        _ executable: String, arguments: [String] = [], environment: [String: String],
        stdin: Stdio = .null, stdout: Stdio = .null, stderr: Stdio = .null
    ) throws {
        _ = Self.ignoreSIGPIPE
        var parentEnds: [Int32] = [-1, -1, -1]
        var childEnds: [Int32] = [-1, -1, -1]
        defer { for fd in childEnds where fd >= 0 { close(fd) } }
        do {
            for (index, stdio) in [stdin, stdout, stderr].enumerated() {
                switch stdio {
                case .null:
                    childEnds[index] = try Self.check(open("/dev/null", (index == 0 ? O_RDONLY : O_WRONLY) | O_CLOEXEC), "open /dev/null")
                case .file(let url):
                    childEnds[index] = try Self.check(open(url.path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o644), "open \(url.path)")
                case .pipe:
                    var fds: [Int32] = [-1, -1]
                    _ = try Self.check(pipe(&fds), "pipe")
                    for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
                    // stdin: the child reads fds[0]; stdout and stderr: the child writes fds[1].
                    childEnds[index] = index == 0 ? fds[0] : fds[1]
                    parentEnds[index] = index == 0 ? fds[1] : fds[0]
                }
            }
        } catch {
            for fd in parentEnds where fd >= 0 { close(fd) }
            throw error
        }

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        for (index, fd) in childEnds.enumerated() { posix_spawn_file_actions_adddup2(&actions, fd, Int32(index)) }
        guard let closeFrom = Self.addCloseFrom, closeFrom(&actions, 3) == 0 else {
            for fd in parentEnds where fd >= 0 { close(fd) }
            throw SpawnError(message: "posix_spawn_file_actions_addclosefrom_np is not available")
        }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // The child starts as from a shell: no signal blocked (the spawning thread may block
        // some, and SIGTERM would then never arrive), every signal at its default action (the
        // test process ignores SIGPIPE). It stays in the test runner's process group, so a
        // terminal's Ctrl-C or scripts/test's time limit ends it with the runner.
        var none = sigset_t(), all = sigset_t()
        sigemptyset(&none)
        sigfillset(&all)
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { for pointer in argv + envp { free(pointer) } }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, executable, &actions, &attributes, argv, envp)
        guard result == 0 else {
            for fd in parentEnds where fd >= 0 { close(fd) }
            throw SpawnError(message: "cannot start \(executable): \(String(cString: strerror(result)))")
        }
        processIdentifier = pid
        stdinWriter = parentEnds[0]
        stdoutReader = parentEnds[1]
        stderrReader = parentEnds[2]
    }

    deinit {
        for fd in [stdinWriter, stdoutReader, stderrReader] where fd >= 0 { close(fd) }
        _ = isRunning  // reaps a child that has ended, so no zombie waits for the test process
    }

    /// Closes the write end of the child's stdin: its end of file.
    public func closeStdin() {
        lock.lock()
        defer { lock.unlock() }
        if stdinWriter >= 0 { close(stdinWriter) }
        stdinWriter = -1
    }

    /// Whether the child still runs (reaps it once it has ended).
    public var isRunning: Bool {
        lock.lock()
        defer { lock.unlock() }
        if status != nil { return false }
        var raw: Int32 = 0
        let result = waitpid(processIdentifier, &raw, WNOHANG)
        if result == processIdentifier { status = raw }
        return status == nil
    }

    /// The exit code, or the number of the signal that ended the child (as Foundation's
    /// `Process` reports it). Only meaningful once `isRunning` is false.
    public var terminationStatus: Int32 {
        lock.lock()
        defer { lock.unlock() }
        guard let status else { return -1 }
        let signal = status & 0x7f
        return signal == 0 ? (status >> 8) & 0xff : signal
    }

    /// Whether a signal ended the child.
    public var wasSignalled: Bool {
        lock.lock()
        defer { lock.unlock() }
        guard let status else { return false }
        return status & 0x7f != 0
    }

    public func terminate() { signal(SIGTERM) }

    public func signal(_ number: Int32) {
        if isRunning { kill(processIdentifier, number) }
    }

    /// Blocks until the child ends or `timeout` passes; returns whether it ended.
    @discardableResult
    public func waitUntilExit(timeout: TimeInterval) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while isRunning {
            guard Date() < deadline else { return false }
            usleep(1000)
        }
        return true
    }

    /// Ends the child: SIGTERM, then SIGKILL if it is still there after `grace` seconds.
    public func stop(grace: TimeInterval = 2) {
        terminate()
        if !waitUntilExit(timeout: grace) {
            signal(SIGKILL)
            waitUntilExit(timeout: 10)
        }
    }

    /// Runs `executable` to its end with `stdin` as its input and returns its exit code and
    /// output. A child still running after `timeout` seconds is stopped (SIGTERM, then
    /// SIGKILL) and its stderr says so: the caller never waits forever.
    public static func run(
        _ executable: String, arguments: [String] = [], environment: [String: String], stdin: [UInt8] = [], timeout: TimeInterval
    ) throws -> ProcessResult {
        let child = try ChildProcess(executable, arguments: arguments, environment: environment, stdin: .pipe, stdout: .pipe, stderr: .pipe)
        // One loop feeds stdin and drains stdout and stderr (so a chatty child never blocks on a
        // full pipe) until the child has ended and both pipes are at their end; the timeout
        // applies whatever the child does.
        var input = stdin[...]
        var inputOpen = true
        var output: [UInt8] = [], errors: [UInt8] = []
        var open = (stdout: true, stderr: true)
        let deadline = Date().addingTimeInterval(timeout)
        var timedOut = false
        var endedAt: Date?
        var buffer = [UInt8](repeating: 0, count: 65536)
        while open.stdout || open.stderr {
            if inputOpen, input.isEmpty { child.closeStdin(); inputOpen = false }
            var fds = [
                pollfd(fd: open.stdout ? child.stdoutReader : -1, events: Int16(POLLIN), revents: 0),
                pollfd(fd: open.stderr ? child.stderrReader : -1, events: Int16(POLLIN), revents: 0),
                pollfd(fd: inputOpen ? child.stdinWriter : -1, events: Int16(POLLOUT), revents: 0),
            ]
            _ = poll(&fds, 3, 10)
            for (index, fd) in fds.enumerated().prefix(2) where fd.revents != 0 {
                let count = buffer.withUnsafeMutableBytes { read(fd.fd, $0.baseAddress, $0.count) }
                if count > 0 {
                    if index == 0 { output += buffer[..<count] } else { errors += buffer[..<count] }
                } else if count == 0 || errno != EINTR {
                    if index == 0 { open.stdout = false } else { open.stderr = false }
                }
            }
            if inputOpen, fds[2].revents != 0 {
                let written = input.withUnsafeBytes { write(child.stdinWriter, $0.baseAddress, min($0.count, 65536)) }
                // EPIPE: the child ended without reading it all (a configuration error does).
                if written > 0 { input = input.dropFirst(written) } else if errno != EINTR && errno != EAGAIN { input = [] }
            }
            if !child.isRunning {
                // Ended: what is left in the pipes comes at once; a grandchild holding them does not count.
                let ended = endedAt ?? Date()
                endedAt = ended
                if Date().timeIntervalSince(ended) > 2 { break }
            } else if Date() > deadline {
                timedOut = true
                child.stop()
            }
        }
        child.closeStdin()
        child.waitUntilExit(timeout: 10)
        let stderr = String(decoding: errors, as: UTF8.self)
        return ProcessResult(
            exitCode: child.terminationStatus,
            stdout: String(decoding: output, as: UTF8.self),
            stderr: timedOut
                ? stderr + "\n[\((executable as NSString).lastPathComponent) was still running after \(String(format: "%g", timeout)) s and was stopped]\n"
                : stderr,
            signalled: child.wasSignalled && !timedOut, timedOut: timedOut)
    }

    public struct SpawnError: Error, CustomStringConvertible {
        public let message: String
        public var description: String { message }
    }

    private static func check(_ result: Int32, _ what: String) throws -> Int32 {
        guard result >= 0 else { throw SpawnError(message: "\(what): \(String(cString: strerror(errno)))") }
        return result
    }

    /// glibc 2.34+ has it; Swift's Glibc module does not declare it (it needs _GNU_SOURCE).
    private typealias AddCloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
    private static let addCloseFrom: AddCloseFrom? = dlsym(nil, "posix_spawn_file_actions_addclosefrom_np")
        .map { unsafeBitCast($0, to: AddCloseFrom.self) }

    /// Writing to a child that has already exited must be an EPIPE error, not the end of the
    /// test process.
    private static let ignoreSIGPIPE: Void = { _ = Glibc.signal(SIGPIPE, SIG_IGN) }()
}

import Dispatch

#if canImport(Glibc)
import Glibc
#endif

/// SIGINT and SIGTERM as an async sequence (their default action is turned off, so the
/// server can finish what it is doing). The handlers run on a global queue, outside any actor.
enum ShutdownSignals {
    static func stream() -> AsyncStream<Int32> {
        let (stream, continuation) = AsyncStream<Int32>.makeStream()
        let sources = [SIGINT, SIGTERM].map { number -> any DispatchSourceSignal in
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { @Sendable in continuation.yield(number) }
            source.resume()
            return source
        }
        let box = SourcesBox(sources)
        continuation.onTermination = { @Sendable _ in box.cancel() }
        return stream
    }
}

private final class SourcesBox: @unchecked Sendable {
    private let sources: [any DispatchSourceSignal]
    init(_ sources: [any DispatchSourceSignal]) { self.sources = sources }
    func cancel() { sources.forEach { $0.cancel() } }
}

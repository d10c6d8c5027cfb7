/// Collects the requests a stand-in received, in order.
public actor Recorder {
    public private(set) var all: [LoopbackServer.Request] = []
    public init() {}

    @discardableResult
    public func add(_ request: LoopbackServer.Request) -> Int {
        all.append(request)
        return all.count
    }

    public var count: Int { all.count }
}

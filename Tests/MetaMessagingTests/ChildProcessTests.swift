import Foundation
import TestSupport
import Testing

/// The tests start hundreds of processes, many at once, and some (moto's harness, the Lambda
/// loop bootstraps) live long. A CI run once hung for 90 minutes: with Foundation's `Process`,
/// a long-lived child spawned concurrently can inherit another child's pipe or exit socket, and
/// that child's output then never reaches its end. These tests hold the runner to what prevents it.
@Suite struct ChildProcessTests {
    private static func descriptors(of pid: pid_t) -> [Int] {
        ((try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd")) ?? []).compactMap(Int.init).sorted()
    }

    @Test func concurrentChildrenHoldOnlyTheirStandardDescriptors() async throws {
        let environment = ["PATH": "/usr/bin:/bin"]
        let results = try await withThrowingTaskGroup(of: (sleeper: ChildProcess?, result: ProcessResult?).self) { group in
            for index in 0..<48 {
                group.addTask {
                    try await Executables.offPool {
                        if index.isMultiple(of: 6) {
                            let sleeper = try ChildProcess("/bin/sleep", arguments: ["30"], environment: environment, stdin: .pipe, stdout: .pipe)
                            return (sleeper, nil)
                        }
                        return (nil, try ChildProcess.run("/bin/echo", arguments: ["\(index)"], environment: environment, timeout: 20))
                    }
                }
            }
            return try await group.reduce(into: [(sleeper: ChildProcess?, result: ProcessResult?)]()) { $0.append($1) }
        }
        let sleepers = results.compactMap(\.sleeper)
        defer { for sleeper in sleepers { sleeper.stop() } }
        #expect(sleepers.count == 8)
        for sleeper in sleepers {
            #expect(Self.descriptors(of: sleeper.processIdentifier) == [0, 1, 2])
        }
        let runs = results.compactMap(\.result)
        #expect(runs.count == 40)
        #expect(runs.allSatisfy { $0.exitCode == 0 && !$0.stderr.contains("was still running") })
        #expect(Set(runs.map { $0.stdout }).count == 40)
    }

    @Test func aChildThatNeverEndsIsStoppedAtTheTimeout() async throws {
        let started = ContinuousClock.now
        let result = try await Executables.offPool {
            try ChildProcess.run("/bin/sleep", arguments: ["600"], environment: [:], timeout: 0.5)
        }
        #expect(ContinuousClock.now - started < .seconds(10))
        #expect(result.exitCode == SIGTERM)
        #expect(result.stderr.contains("sleep was still running after 0.5 s and was stopped"))
    }

    @Test func inputAndOutputLargerThanAPipeFlowBothWays() async throws {
        // cat echoes 1 MB while it is still being fed: the runner must drain while it writes.
        let input = (0..<1_048_576).map { UInt8(32 + ($0 * 7) % 95) }
        let result = try await Executables.offPool {
            try ChildProcess.run("/bin/cat", environment: [:], stdin: input, timeout: 20)
        }
        #expect(result.exitCode == 0)
        #expect(result.stdout == String(decoding: input, as: UTF8.self))
    }
}

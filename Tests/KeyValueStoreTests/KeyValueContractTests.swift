import Foundation
import KeyValueStore
import TestSupport
import Testing

/// One contract, both backends: the file store and DynamoDB (moto on loopback, signatures checked).
@Suite struct KeyValueContractTests {
    static func tables() -> (simple: TableSchema, sorted: TableSchema) {
        (
            TableSchema(name: Stores.unique("simple"), partitionKey: "id"),
            TableSchema(name: Stores.unique("sorted"), partitionKey: "businessId", sortKey: "serviceType")
        )
    }

    @Test(arguments: StoreBackend.allCases)
    func everyAttributeTypeRoundTrips(_ backend: StoreBackend) async throws {
        let (simple, sorted) = Self.tables()
        let store = try await Stores.make(backend, tables: [simple, sorted])
        let item: Item = [
            "id": .s("all-types"), "s": .s("é \u{1F600} \"quoted\" \\/"), "n": .n("-12.5"), "b": .b([0, 1, 255]),
            "bool": .bool(true), "null": .null, "m": .m(["inner": .s("x"), "deep": .m(["n": .n("1")])]),
            "l": .l([.s("a"), .n("2"), .bool(false)]), "ss": .ss(["a", "b"]), "ns": .ns(["1", "2"]), "bs": .bs([[1], [2, 3]]),
        ]
        try await store.put(simple, item: item)
        let read = try #require(try await store.get(simple, key: ["id": .s("all-types")]))
        #expect(read["s"] == item["s"])
        #expect(read["n"] == item["n"])
        #expect(read["b"] == item["b"])
        #expect(read["bool"] == item["bool"])
        #expect(read["null"] == item["null"])
        #expect(read["m"] == item["m"])
        #expect(read["l"] == item["l"])
        #expect(Set(read["ss"].flatMap { if case .ss(let v) = $0 { v } else { nil } } ?? []) == ["a", "b"])
        #expect(Set(read["ns"].flatMap { if case .ns(let v) = $0 { v } else { nil } } ?? []) == ["1", "2"])
        let binarySet: [[UInt8]] = read["bs"].flatMap { if case .bs(let v) = $0 { v } else { nil } } ?? []
        #expect(Set(binarySet) == Set([[1], [2, 3]] as [[UInt8]]))
        #expect(try await store.get(simple, key: ["id": .s("missing")]) == nil)
    }

    @Test(arguments: StoreBackend.allCases)
    func conditionalPutOnlyIfAbsent(_ backend: StoreBackend) async throws {
        let (simple, sorted) = Self.tables()
        let store = try await Stores.make(backend, tables: [simple, sorted])
        try await store.put(simple, item: ["id": .s("m1"), "owner": .s("first")], condition: .itemAbsent)
        await #expect(throws: KeyValueError.self) {
            try await store.put(simple, item: ["id": .s("m1"), "owner": .s("second")], condition: .itemAbsent)
        }
        do {
            try await store.put(simple, item: ["id": .s("m1"), "owner": .s("second")], condition: .itemAbsent)
        } catch {
            #expect(error.code == .conditionFailed)
        }
        #expect(try await store.get(simple, key: ["id": .s("m1")])?["owner"] == .s("first"))
    }

    @Test(arguments: StoreBackend.allCases)
    func putAbsentOrSameOwnerRefusesAnotherOwner(_ backend: StoreBackend) async throws {
        let (simple, sorted) = Self.tables()
        let store = try await Stores.make(backend, tables: [simple, sorted])
        let mine: Condition = .or(.itemAbsent, .equals("businessId", .s("B1")))
        try await store.put(simple, item: ["id": .s("page-1"), "businessId": .s("B1"), "v": .n("1")], condition: mine)
        try await store.put(simple, item: ["id": .s("page-1"), "businessId": .s("B1"), "v": .n("2")], condition: mine)
        let theirs: Condition = .or(.itemAbsent, .equals("businessId", .s("B2")))
        do {
            try await store.put(simple, item: ["id": .s("page-1"), "businessId": .s("B2")], condition: theirs)
            Issue.record("another owner took the item over")
        } catch {
            #expect(error.code == .conditionFailed)
        }
        let item = try await store.get(simple, key: ["id": .s("page-1")])
        #expect(item?["businessId"] == .s("B1"))
        #expect(item?["v"] == .n("2"))
    }

    @Test(arguments: StoreBackend.allCases)
    func updateCreatesSetsRemovesAndChecksConditions(_ backend: StoreBackend) async throws {
        let (simple, sorted) = Self.tables()
        let store = try await Stores.make(backend, tables: [simple, sorted])
        let key: Item = ["businessId": .s("B1"), "serviceType": .s("meta")]
        let created = try await store.update(sorted, key: key, set: ["isActive": .bool(true), "reason": .s("x")])
        #expect(created["isActive"] == .bool(true))
        #expect(created["businessId"] == .s("B1"))
        let updated = try await store.update(sorted, key: key, set: ["isActive": .bool(false)], remove: ["reason"], condition: .itemPresent)
        #expect(updated["isActive"] == .bool(false))
        #expect(updated["reason"] == nil)
        #expect(try await store.get(sorted, key: key) == updated)
        do {
            try await store.update(sorted, key: key, set: ["isActive": .bool(true)], remove: [], condition: .equals("isActive", .bool(true)))
            Issue.record("the update ignored its condition")
        } catch {
            #expect(error.code == .conditionFailed)
        }
        do {
            try await store.update(
                sorted, key: ["businessId": .s("none"), "serviceType": .s("meta")], set: ["x": .s("y")], remove: [], condition: .itemPresent)
            Issue.record("the update created an item despite itemPresent")
        } catch {
            #expect(error.code == .conditionFailed)
        }
    }

    @Test(arguments: StoreBackend.allCases)
    func incrementCountsEveryConcurrentAddOnce(_ backend: StoreBackend) async throws {
        let (simple, _) = Self.tables()
        let store = try await Stores.make(backend, tables: [simple])
        let key: Item = ["id": .s("share:B1:100")]
        let first = try await store.increment(simple, key: key, attribute: "started", by: 3, set: ["expiresAt": .n("160")])
        #expect(first == ["id": .s("share:B1:100"), "started": .n("3"), "expiresAt": .n("160")])
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<20 { group.addTask { _ = try await store.increment(simple, key: key, attribute: "started", by: 2, set: [:]) } }
            try await group.waitForAll()
        }
        #expect(try await store.get(simple, key: key)?["started"] == .n("43"))
        let lowered = try await store.increment(simple, key: key, attribute: "started", by: -43, set: [:])
        #expect(lowered["started"] == .n("0"))
        // A counter that is not a number is refused, and stays as it was.
        try await store.put(simple, item: ["id": .s("text"), "started": .s("many")])
        do {
            try await store.increment(simple, key: ["id": .s("text")], attribute: "started", by: 1, set: [:])
            Issue.record("a text attribute was incremented")
        } catch {
            #expect(error.code == .invalidRequest)
        }
        #expect(try await store.get(simple, key: ["id": .s("text")])?["started"] == .s("many"))
    }

    @Test(arguments: StoreBackend.allCases)
    func numericConditions(_ backend: StoreBackend) async throws {
        let (simple, sorted) = Self.tables()
        let store = try await Stores.make(backend, tables: [simple, sorted])
        try await store.put(simple, item: ["id": .s("lease"), "until": .n("100")])
        let stale: Condition = .or(.itemAbsent, .lessThan("until", .n("150")))
        try await store.put(simple, item: ["id": .s("lease"), "until": .n("900")], condition: stale)
        do {
            try await store.put(simple, item: ["id": .s("lease"), "until": .n("1000")], condition: stale)
            Issue.record("9 < 150 numerically, 900 is not")
        } catch {
            #expect(error.code == .conditionFailed)
        }
    }

    @Test(arguments: StoreBackend.allCases)
    func deleteAndQuery(_ backend: StoreBackend) async throws {
        let (simple, sorted) = Self.tables()
        let store = try await Stores.make(backend, tables: [simple, sorted])
        for service in ["whatsapp", "meta", "google"] {
            try await store.put(sorted, item: ["businessId": .s("B1"), "serviceType": .s(service)])
        }
        try await store.put(sorted, item: ["businessId": .s("B2"), "serviceType": .s("meta")])
        let items = try await store.query(sorted, partitionKey: .s("B1"))
        #expect(items.compactMap { $0["serviceType"]?.string } == ["google", "meta", "whatsapp"])
        try await store.delete(sorted, key: ["businessId": .s("B1"), "serviceType": .s("meta")])
        try await store.delete(sorted, key: ["businessId": .s("B1"), "serviceType": .s("absent")])
        #expect(try await store.get(sorted, key: ["businessId": .s("B1"), "serviceType": .s("meta")]) == nil)
        #expect(try await store.query(sorted, partitionKey: .s("B1")).count == 2)
        #expect(try await store.query(sorted, partitionKey: .s("nobody")).isEmpty)
    }

    @Test(arguments: StoreBackend.allCases)
    func aBatchOfWritesHasOneOutcomeEachInOrder(_ backend: StoreBackend) async throws {
        let (simple, sorted) = Self.tables()
        let store = try await Stores.make(backend, tables: [simple, sorted])
        try await store.put(simple, item: ["id": .s("claimed"), "owner": .s("first"), "leaseUntil": .n("10")])
        let outcomes = try await store.write(
            simple,
            [
                // Taken over by someone else: not written, the rest still is.
                .update(key: ["id": .s("claimed")], set: ["status": .s("answered")], remove: ["leaseUntil"], condition: .equals("owner", .s("second"))),
                .put(["id": .s("sent:1"), "status": .s("sent")]),
                // Sees the put before it in the same batch.
                .update(key: ["id": .s("sent:1")], set: ["status": .s("delivered")], condition: .itemPresent),
                .update(key: ["id": .s("claimed")], set: ["status": .s("answered")], remove: ["leaseUntil"], condition: .equals("owner", .s("first"))),
                // Lacks the key: refused, and the batch goes on.
                .put(["other": .s("x")]),
                .put(["id": .s("absent-only")], condition: .itemAbsent),
            ])
        #expect(outcomes.count == 6)
        let codes = outcomes.map { outcome -> KeyValueError.Code? in if case .failure(let error) = outcome { error.code } else { nil } }
        #expect(codes == [.conditionFailed, nil, nil, nil, .invalidRequest, nil])
        #expect(try outcomes[2].get()["status"] == .s("delivered"))
        #expect(try outcomes[3].get() == ["id": .s("claimed"), "owner": .s("first"), "status": .s("answered")])
        #expect(try await store.get(simple, key: ["id": .s("claimed")]) == ["id": .s("claimed"), "owner": .s("first"), "status": .s("answered")])
        #expect(try await store.get(simple, key: ["id": .s("sent:1")]) == ["id": .s("sent:1"), "status": .s("delivered")])
        #expect(try await store.get(simple, key: ["id": .s("absent-only")]) != nil)
        #expect(try await store.write(simple, []).isEmpty)
    }

    @Test(arguments: StoreBackend.allCases)
    func unknownTableIsATypedError(_ backend: StoreBackend) async throws {
        let (simple, _) = Self.tables()
        let store = try await Stores.make(backend, tables: [simple])
        let unknown = TableSchema(name: Stores.unique("never-created"), partitionKey: "id")
        do {
            _ = try await store.get(unknown, key: ["id": .s("x")])
            Issue.record("an unknown table answered")
        } catch {
            #expect(error.code == .tableNotFound)
        }
    }

    @Test(arguments: StoreBackend.allCases)
    func concurrentConditionalPutsHaveExactlyOneWinner(_ backend: StoreBackend) async throws {
        let (simple, _) = Self.tables()
        let store = try await Stores.make(backend, tables: [simple])
        let winners = await withTaskGroup(of: Bool.self) { group in
            for index in 0..<16 {
                group.addTask {
                    do {
                        try await store.put(simple, item: ["id": .s("race"), "by": .n(String(index))], condition: .itemAbsent)
                        return true
                    } catch {
                        return false
                    }
                }
            }
            return await group.reduce(0) { $0 + ($1 ? 1 : 0) }
        }
        #expect(winners == 1)
    }
}

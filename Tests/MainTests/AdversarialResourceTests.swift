import Foundation
import Testbed
import Testing

/// Issue #9, resources, end to end through the real binary: oversized heads and tokens are
/// refused quickly, many idle or slow connections do not stop normal clients being served, and
/// a client that never reads cannot make the proxy buffer without bound.
@Suite("Adversarial: resource exhaustion, through the real binary", .serialized)
struct AdversarialResourceTests {
    /// Sends `request` on a blocking socket (a peer that stops reading cannot block this for
    /// long) and reads the answer until the proxy closes the connection.
    private func exchange(_ request: String, proxy: RunningProxy) throws -> RawHTTPClient.Response {
        let socket = try ClientSocket(port: proxy.port)
        defer { socket.close() }
        socket.setSendTimeout(.seconds(10))
        socket.send(request)
        let (bytes, closed) = socket.receiveAll(timeout: .seconds(10))
        return RawHTTPClient.Response(bytes: bytes, closedByServer: closed)
    }

    /// Expects `status` as Status JSON, the connection closed, nothing upstream, and the proxy serving.
    private func expectOversizedRefused(
        _ request: String, status: Int, proxy: RunningProxy, _ comment: Comment,
        sourceLocation: SourceLocation = #_sourceLocation
    ) async throws {
        let before = proxy.api.requests.count
        let started = ContinuousClock.now
        let response = try exchange(request, proxy: proxy)
        #expect(response.status == status, "\(comment): \(response.text.prefix(200))", sourceLocation: sourceLocation)
        #expect(response.body.contains(#""code":\#(status)"#), "\(comment)", sourceLocation: sourceLocation)
        #expect(response.closedByServer, "\(comment): not closed", sourceLocation: sourceLocation)
        #expect(ContinuousClock.now - started < .seconds(10), "\(comment): slow", sourceLocation: sourceLocation)
        #expect(
            proxy.api.requests.count == before, "\(comment): reached the API server", sourceLocation: sourceLocation)
        try await proxy.expectServing(sourceLocation: sourceLocation)
    }

    @Test("a 2 MB header section, in one field or in many: 431 Status, closed, nothing upstream")
    func hugeHeaderSection() async throws {
        try await RunningProxy.run { proxy in
            let oneField = try proxy.request(extra: ["X-Pad: " + String(repeating: "a", count: 2 << 20)])
            try await expectOversizedRefused(oneField, status: 431, proxy: proxy, "one 2 MB field")
            let padding = String(repeating: "b", count: 1000)
            let manyFields = try proxy.request(extra: (0..<2048).map { "X-Pad-\($0): \(padding)" })
            try await expectOversizedRefused(manyFields, status: 431, proxy: proxy, "2048 fields of 1 KB")
        }
    }

    @Test("10 000 header fields: 431 Status, closed, nothing upstream")
    func tenThousandHeaders() async throws {
        try await RunningProxy.run { proxy in
            let request = try proxy.request(extra: (0..<10_000).map { "X-H-\($0): v" })
            try await expectOversizedRefused(request, status: 431, proxy: proxy, "10 000 fields")
        }
    }

    @Test("a 100 KB token is refused by the head limit (431); a 60 KB one is judged quickly (401)")
    func hugeTokens() async throws {
        try await RunningProxy.run { proxy in
            // Correctly signed by the trusted issuer: only the size is wrong with it.
            let padded = proxy.issuer.claims().setting("padding", .string(String(repeating: "p", count: 75_000)))
            let signed = try proxy.issuer.mint(padded)
            #expect(signed.utf8.count > 100_000)
            try await expectOversizedRefused(
                try proxy.request(token: signed), status: 431, proxy: proxy, "a 100 KB signed token")
            let junk =
                String(repeating: "A", count: 20_000) + "." + String(repeating: "B", count: 20_000) + "."
                + String(repeating: "C", count: 20_000)
            try await expectOversizedRefused(
                try proxy.request(token: junk), status: 401, proxy: proxy, "a 60 KB junk token")
        }
    }

    @Test("5 000 idle connections are held, and normal clients are served meanwhile")
    func fiveThousandIdleConnections() async throws {
        // Both ends of each connection are in different processes; the proxy inherits this limit.
        let available = raiseOpenFileLimit(to: 5_000 + 1_024)
        // Where the hard limit is lower, as many as it allows (and say so).
        let count = min(5_000, available - 1_024)
        #expect(count == 5_000, "the open-file limit (\(available)) only allows \(count) idle connections")
        try await RunningProxy.run { proxy in
            let residentBefore = try proxy.residentBytes
            var idle: [ClientSocket] = []
            idle.reserveCapacity(count)
            for _ in 0..<count { idle.append(try ClientSocket(port: proxy.port)) }
            try await proxy.expectServing()
            #expect(idle.allSatisfy { !$0.peerClosed }, "the proxy dropped idle connections")
            // The last one accepted is a working connection, not a refused one.
            let last = try #require(idle.last)
            last.send("GET /healthz HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n")
            let answer = last.receiveAll(timeout: .seconds(10))
            #expect(String(decoding: answer.bytes, as: UTF8.self).hasPrefix("HTTP/1.1 200 OK\r\n"))
            let growth = try proxy.residentBytes - residentBefore
            // Under a sanitizer the resident size is mostly the sanitizer's own (shadow memory,
            // quarantined frees); the bound is checked by the normal test run.
            if !ProxyBinary.isSanitized {
                #expect(growth < 150 << 20, "5 000 idle connections cost \(growth >> 20) MB")
            }
            for socket in idle { socket.close() }
            try await proxy.expectServing()
        }
    }

    @Test("200 slowloris connections get nothing, while normal clients are served")
    func slowloris() async throws {
        try await RunningProxy.run { proxy in
            let token = try proxy.issuer.mint()
            var slow: [ClientSocket] = []
            for _ in 0..<200 {
                let socket = try ClientSocket(port: proxy.port)
                socket.send("GET /version HTTP/1.1\r\nHost: p\r\nAuthorization: Bearer \(token)\r\n")
                slow.append(socket)
            }
            let before = proxy.api.requests.count
            for round in 0..<8 {
                for socket in slow { socket.send("X-Drip-\(round): 1\r\n") }
                let response = try await proxy.get()
                #expect(response.status == 200, "round \(round)")
                try await Task.sleep(for: .milliseconds(250))
            }
            #expect(proxy.api.requests.count == before + 8, "only the normal clients' requests go upstream")
            #expect(!slow.contains { $0.hasReceivedBytes }, "a head that never ended was answered")
            for socket in slow { socket.close() }
            try await proxy.expectServing()
        }
    }

    @Test("a client that never reads an endless watch: backpressure reaches the API server and memory stays bounded")
    func neverReadingClient() async throws {
        try await RunningProxy.run { proxy in
            try await proxy.expectServing()
            let residentBefore = try proxy.residentBytes
            let reader = try ClientSocket(port: proxy.port, receiveBufferBytes: 4096)
            reader.send(try proxy.request("/testbed/endless", close: false))

            // The API server keeps writing until every buffer on the way is full; then it stalls.
            let last = try await Self.endlessStreamStall(proxy, quiet: .seconds(3))
            #expect(last > 0, "the stream never started")
            #expect(last < 64 << 20, "the API server wrote \(last >> 20) MB to a client that reads nothing")
            let growth = try proxy.residentBytes - residentBefore
            #expect(growth < 50 << 20, "the proxy grew by \(growth >> 20) MB")

            // Reading again drains the stream: the stall was backpressure, not a broken stream.
            #expect(reader.receive(atMost: 8 << 20) == 8 << 20)
            #expect(try await eventually { proxy.api.endlessStreamBytes > last }, "the stream did not resume")
            reader.close()
            try await proxy.expectServing()
        }
    }

    @Test("over HTTP/2 to the API server, a watch nobody reads stalls its own stream, not its connection's others")
    func neverReadingClientOnSharedConnection() async throws {
        try await RunningProxy.run(upstreamHTTP2: true) { proxy in
            let reader = try ClientSocket(port: proxy.port, receiveBufferBytes: 4096)
            reader.send(try proxy.request("/testbed/endless?watch=true", close: false))
            let last = try await Self.endlessStreamStall(proxy, quiet: .seconds(2))
            #expect(last > 0, "the stream never started")
            let endless = try #require(proxy.api.requests.last)
            #expect(endless.httpMajorVersion == 2)

            // Watches until one shares the stalled stream's connection (each event loop of the
            // proxy has its own): its events still flow.
            var watchers: [ClientSocket] = []
            var shared: ClientSocket?
            for _ in 0..<16 where shared == nil {
                let before = proxy.api.requests.count
                let watcher = try ClientSocket(port: proxy.port)
                watcher.send(try proxy.request("/api/v1/namespaces?watch=true"))
                watchers.append(watcher)
                #expect(try await eventually { proxy.api.requests.count == before + 1 })
                if proxy.api.requests.last?.connection == endless.connection { shared = watcher }
            }
            let watcher = try #require(shared, "no watch shared the stalled stream's connection")
            proxy.api.releaseWatches()
            let answer = watcher.receiveAll(timeout: .seconds(10))
            let text = String(decoding: answer.bytes, as: UTF8.self)
            #expect(text.contains("ADDED") && text.contains("MODIFIED") && text.hasSuffix("0\r\n\r\n"), "got: \(text)")
            for socket in watchers { socket.close() }

            // Reading again drains the stalled stream: backpressure, not a broken stream.
            #expect(reader.receive(atMost: 4 << 20) == 4 << 20)
            #expect(try await eventually { proxy.api.endlessStreamBytes > last }, "the stream did not resume")
            reader.close()
            try await proxy.expectServing()
        }
    }

    /// Waits until the stand-in's endless stream has written nothing for `quiet` (a minute at
    /// most, which fails the test) and returns the bytes it had written.
    private static func endlessStreamStall(_ proxy: RunningProxy, quiet: Duration) async throws -> Int {
        var last = -1
        var unchangedSince = ContinuousClock.now
        let deadline = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < deadline && ContinuousClock.now - unchangedSince < quiet {
            let written = proxy.api.endlessStreamBytes
            if written != last {
                last = written
                unchangedSince = .now
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(ContinuousClock.now - unchangedSince >= quiet, "the API server never stopped writing")
        return last
    }
}

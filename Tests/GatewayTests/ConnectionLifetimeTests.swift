import Testbed
import Testing

@testable import Gateway

/// A proxy that runs for months must not keep anything of a connection once it has closed:
/// LeakSanitizer found every client connection's handler, pipeline and timers kept alive by a
/// reference cycle (handler → context → handler), and both ends of every spliced session by
/// another (end ↔ partner).
@Suite("Connection lifetime: nothing of a closed connection stays in memory")
struct ConnectionLifetimeTests {
    private static func live() -> (proxy: Int, splice: Int) {
        (ProxyHandler.liveInstances.load(ordering: .relaxed), SpliceHandler.liveInstances.load(ordering: .relaxed))
    }

    /// Waits until the live handler counts are back at `baseline`; returns the last counts seen.
    private static func settle(at baseline: (proxy: Int, splice: Int)) async throws -> (proxy: Int, splice: Int) {
        var counts = live()
        for _ in 0..<100 where counts != baseline {
            try await Task.sleep(for: .milliseconds(50))
            counts = live()
        }
        return counts
    }

    @Test("forwarded, refused and upgraded connections free their handlers once closed")
    func handlersAreFreed() async throws {
        try await ProxyHarness.run { harness in
            let baseline = Self.live()
            let token = try harness.issuer.mint()
            for _ in 0..<5 {
                let response = try await RawHTTPClient.send(
                    "GET /api/v1/namespaces HTTP/1.1\r\nHost: p\r\nAuthorization: Bearer \(token)\r\n"
                        + "Connection: close\r\n\r\n", port: harness.port, timeout: .seconds(10))
                #expect(response.status == 200)
            }
            let refused = try await RawHTTPClient.send(
                "GET /api/v1/namespaces HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n", port: harness.port,
                timeout: .seconds(10))
            #expect(refused.status == 401)

            for _ in 0..<3 {
                let connection = try await harness.openEchoSession()
                // While the session is open its handlers exist: the counts do see them.
                let open = Self.live()
                #expect(open.proxy > baseline.proxy && open.splice >= baseline.splice + 2)
                await connection.close()
            }

            let after = try await Self.settle(at: baseline)
            #expect(after.proxy == baseline.proxy, "proxy handlers still alive: \(after.proxy - baseline.proxy)")
            #expect(after.splice == baseline.splice, "splice ends still alive: \(after.splice - baseline.splice)")
        }
    }

    @Test("an API server connection the proxy lets go is closed once the server answers, not after TLS's 5 s timeout")
    func upstreamConnectionClosesPromptly() async throws {
        try await ProxyHarness.run { harness in
            #expect(try await harness.get("/api/v1/namespaces", token: try harness.issuer.mint()).status == 200)
            // The proxy's end of its idle connection to the API server.
            let upstream = { try TCPKeepAliveTests.sockets().filter { $0.remotePort == harness.api.port } }
            #expect(try upstream().contains { $0.state == 1 })
            let started = ContinuousClock.now
            harness.pool.closeIdleConnections()
            // Established, or close-wait: the server has answered the close and this end holds on.
            while try upstream().contains(where: { $0.state == 1 || $0.state == 8 }),
                ContinuousClock.now - started < .seconds(8)
            {
                try await Task.sleep(for: .milliseconds(20))
            }
            #expect(try !upstream().contains { $0.state == 1 || $0.state == 8 })
            #expect(ContinuousClock.now - started < .seconds(2), "the close waited for TLS's shutdown timeout")
        }
    }
}

@Suite("Draining client connections")
struct DrainingConnectionTests {
    @Test("a drain closes an idle keep-alive connection at once, and ends one mid-request after its response")
    func drainClosesConnections() async throws {
        try await ProxyHarness.run { harness in
            let token = try harness.issuer.mint()
            let idle = try await RawConnection.connect(port: harness.port)
            try await idle.send("GET /version HTTP/1.1\r\nHost: p\r\nAuthorization: Bearer \(token)\r\n\r\n")
            #expect(try await idle.wait { $0.text.contains("gitVersion") })
            let busy = try await RawConnection.connect(port: harness.port)
            try await busy.send(
                "GET /testbed/delay?ms=1000 HTTP/1.1\r\nHost: p\r\nAuthorization: Bearer \(token)\r\n\r\n"
                    + "GET /version HTTP/1.1\r\nHost: p\r\nAuthorization: Bearer \(token)\r\n\r\n")
            for _ in 0..<200 where !harness.api.requests.contains(where: { $0.path == "/testbed/delay" }) {
                try await Task.sleep(for: .milliseconds(10))
            }
            let drained = Task { await harness.server.drain(deadline: .seconds(10)) }
            #expect(try await idle.wait(timeout: .seconds(2)) { $0.peerFinished }, "the idle connection stayed open")
            #expect(!busy.peerFinished)
            #expect(try await busy.wait { $0.peerFinished })
            #expect(await drained.value)
            // The response in flight is whole and says the connection ends; the request pipelined
            // behind it is not served.
            #expect(busy.text.hasPrefix("HTTP/1.1 200 OK\r\n"), "got: \(busy.text)")
            #expect(busy.text.lowercased().contains("connection: close"))
            #expect(busy.text.contains(#""delayed":true"#))
            #expect(busy.text.components(separatedBy: "HTTP/1.1 ").count == 2, "got: \(busy.text)")
            #expect(harness.api.requests.filter { $0.path == "/version" }.count == 1)
        }
    }
}

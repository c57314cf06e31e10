import NIOConcurrencyHelpers
import Testbed
import Testing

@testable import Gateway

/// A client that goes away mid-response takes its API server request with it, as Go's HTTP
/// server (kube-apiserver, and the Go proxy this one succeeds) cancels a request whose
/// connection reads EOF. Otherwise every abandoned `kubectl get -w` or `logs -f` would hold a
/// connection to the API server until the server ends the stream, perhaps an hour later.
@Suite("A client that goes away")
struct ClientGoneTests {
    /// Opens a watch through the proxy and waits until its first event has arrived.
    private static func openWatch(_ harness: ProxyHarness) async throws -> RawConnection {
        let connection = try await RawConnection.connect(port: harness.port)
        try await connection.send(
            "GET /api/v1/namespaces?watch=true HTTP/1.1\r\nHost: p\r\nAuthorization: Bearer \(try harness.issuer.mint())"
                + "\r\n\r\n")
        #expect(try await connection.wait { $0.text.contains("ADDED") }, "got: \(connection.text)")
        return connection
    }

    /// Waits until the API server's held streams still open number `count`. The proxy closes
    /// an upstream connection with TLS's close_notify and gives the server up to five seconds
    /// (swift-nio-ssl's shutdown timeout) to answer it, which the stand-in does not.
    private static func waitForOpenStreams(_ count: Int, _ harness: ProxyHarness) async throws -> Int {
        for _ in 0..<300 where harness.api.openHeldStreams != count {
            try await Task.sleep(for: .milliseconds(50))
        }
        return harness.api.openHeldStreams
    }

    @Test("closing a watch's connection closes the API server's connection of that watch")
    func closeEndsUpstreamWatch() async throws {
        try await ProxyHarness.run { harness in
            let kept = try await Self.openWatch(harness)
            let closed = try await Self.openWatch(harness)
            #expect(try await Self.waitForOpenStreams(2, harness) == 2)
            await closed.close()
            #expect(try await Self.waitForOpenStreams(1, harness) == 1, "the abandoned watch is still open upstream")
            // The other watch goes on, and still gets its events.
            harness.api.releaseWatches()
            #expect(try await kept.wait { $0.text.contains("MODIFIED") }, "got: \(kept.text)")
            await kept.close()
        }
    }

    @Test("half-closing a watch's connection ends it too: the proxy closes both connections")
    func halfCloseEndsUpstreamWatch() async throws {
        try await ProxyHarness.run { harness in
            let watch = try await Self.openWatch(harness)
            #expect(try await Self.waitForOpenStreams(1, harness) == 1)
            try await watch.shutdownOutput()
            #expect(try await watch.wait { $0.peerFinished }, "the proxy kept the client's connection open")
            #expect(try await Self.waitForOpenStreams(0, harness) == 0, "the abandoned watch is still open upstream")
            await watch.close()
        }
    }

    @Test(
        "a client that half-closes after a request the proxy answers itself gets the answer before the close",
        arguments: ["/healthz", "/api/v1/namespaces"])
    func halfCloseAfterLocalAnswer(path: String) async throws {
        try await ProxyHarness.run { harness in
            let connection = try await RawConnection.connect(port: harness.port)
            // As `nc -N` sends it: a keep-alive request (answered 200, or 401 without a token),
            // then the end of its input, both at once.
            try await connection.send("GET \(path) HTTP/1.1\r\nHost: p\r\n\r\n")
            try await connection.shutdownOutput()
            #expect(try await connection.wait { $0.peerFinished }, "the proxy kept the connection open")
            #expect(connection.text.hasPrefix("HTTP/1.1 "), "no answer before the close: \(connection.text)")
            await connection.close()
        }
    }

    @Test("a client that half-closes behind pipelined requests still gets every response")
    func halfCloseAfterPipelinedRequests() async throws {
        try await ProxyHarness.run { harness in
            let token = try harness.issuer.mint()
            let connection = try await RawConnection.connect(port: harness.port)
            // As `nc -N` sends them: two requests, then the end of its input, all at once.
            try await connection.send(
                "GET /testbed/delay?ms=300 HTTP/1.1\r\nHost: p\r\nAuthorization: Bearer \(token)\r\n\r\n"
                    + "GET /version HTTP/1.1\r\nHost: p\r\nAuthorization: Bearer \(token)\r\n\r\n")
            try await connection.shutdownOutput()
            #expect(try await connection.wait { $0.peerFinished }, "the proxy kept the connection open")
            #expect(connection.text.components(separatedBy: "HTTP/1.1 200 OK").count == 3, "got: \(connection.text)")
            #expect(connection.text.contains(#""delayed":true"#) && connection.text.contains("gitVersion"))
            await connection.close()
        }
    }

    @Test("a drain gives up at its deadline on a watch that stays open")
    func drainDeadlineWithOpenWatch() async throws {
        try await ProxyHarness.run { harness in
            let watch = try await Self.openWatch(harness)
            let started = ContinuousClock.now
            // Unstructured, and polled: before the fix the drain waited for the watch to end,
            // however long it took, and a task group would have waited with it.
            let outcome = NIOLockedValueBox<Bool?>(nil)
            Task {
                let drained = await harness.server.drain(deadline: .milliseconds(300))
                outcome.withLockedValue { $0 = drained }
            }
            for _ in 0..<400 where outcome.withLockedValue({ $0 }) == nil {
                try await Task.sleep(for: .milliseconds(50))
            }
            let drained = outcome.withLockedValue { $0 }
            #expect(drained == false, "the drain should have reported its deadline, not waited for the watch")
            #expect(ContinuousClock.now - started >= .milliseconds(300))
            #expect(!watch.peerFinished, "a drain leaves a response in progress running until its deadline")
            await watch.close()
        }
    }
}

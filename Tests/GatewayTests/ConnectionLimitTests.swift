import Testbed
import Testing

@Suite("Connection limits and slow clients")
struct ConnectionLimitTests {
    @Test("a connection that sends nothing is closed after the request-head timeout")
    func idleConnectionClosed() async throws {
        var options = ProxyHarness.Options()
        options.requestHeadTimeout = .milliseconds(300)
        try await ProxyHarness.run(options) { harness in
            let connection = try await RawConnection.connect(port: harness.port)
            #expect(try await connection.wait(timeout: .seconds(5)) { $0.peerFinished })
        }
    }

    @Test("a slowloris client that never finishes its head is cut off, while others are served")
    func slowloris() async throws {
        var options = ProxyHarness.Options()
        options.requestHeadTimeout = .seconds(2)
        try await ProxyHarness.run(options) { harness in
            let slow = try await RawConnection.connect(port: harness.port)
            try await slow.send("GET /version HTTP/1.1\r\nHost: p\r\n")
            for index in 0..<12 {
                try await Task.sleep(for: .milliseconds(250))
                try? await slow.send("X-Drip-\(index): 1\r\n")
                #expect(try await harness.get("/healthz", token: nil).status == 200)
            }
            #expect(try await slow.wait(timeout: .seconds(10)) { $0.peerFinished })
            #expect(!slow.text.contains("HTTP/1.1 200"))
            #expect(harness.api.requests.isEmpty)
        }
    }

    @Test("a keep-alive connection idle after a response is closed after the timeout")
    func idleAfterResponse() async throws {
        var options = ProxyHarness.Options()
        options.requestHeadTimeout = .seconds(2)
        try await ProxyHarness.run(options) { harness in
            let connection = try await RawConnection.connect(port: harness.port)
            try await connection.send("GET /healthz HTTP/1.1\r\nHost: p\r\n\r\n")
            #expect(try await connection.wait { $0.text.hasSuffix("ok") }, "got: \(connection.text)")
            #expect(!connection.peerFinished)
            #expect(try await connection.wait(timeout: .seconds(10)) { $0.peerFinished })
        }
    }

    @Test("connections beyond the limit are refused at once; freed places are reused")
    func connectionLimit() async throws {
        var options = ProxyHarness.Options()
        options.maximumConnections = 2
        try await ProxyHarness.run(options) { harness in
            let first = try await RawConnection.connect(port: harness.port)
            let second = try await RawConnection.connect(port: harness.port)
            try await Task.sleep(for: .milliseconds(100))
            let third = try await RawConnection.connect(port: harness.port)
            #expect(try await third.wait(timeout: .seconds(5)) { $0.peerFinished })
            try await first.send("GET /healthz HTTP/1.1\r\nHost: p\r\n\r\n")
            #expect(try await first.wait { $0.text.hasSuffix("ok") })
            await second.close()
            await third.close()
            try await Task.sleep(for: .milliseconds(100))
            let fourth = try await RawConnection.connect(port: harness.port)
            try await fourth.send("GET /healthz HTTP/1.1\r\nHost: p\r\n\r\n")
            #expect(try await fourth.wait { $0.text.hasSuffix("ok") })
            await first.close()
            await fourth.close()
        }
    }
}

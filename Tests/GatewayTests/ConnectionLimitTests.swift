import NIOCore
import NIOHPACK
import NIOHTTP2
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

    @Test(
        "a connection to the HTTPS listener that never starts its TLS handshake is closed after the request-head timeout"
    )
    func silentTLSConnectionClosed() async throws {
        var options = ProxyHarness.Options.servingTLS
        options.requestHeadTimeout = .milliseconds(300)
        try await ProxyHarness.run(options) { harness in
            let silent = try await RawConnection.connect(port: harness.port)
            #expect(try await silent.wait(timeout: .seconds(5)) { $0.peerFinished })
            // Half a handshake: a ClientHello's first bytes, then nothing.
            let stalled = try await RawConnection.connect(port: harness.port)
            try await stalled.send([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xFC, 0x03, 0x03])
            #expect(try await stalled.wait(timeout: .seconds(5)) { $0.peerFinished })
        }
    }

    @Test(
        "an HTTP/2 connection without a stream is closed with GOAWAY: after the request-head timeout before its first stream, after the idle timeout once its streams ended"
    )
    func idleHTTP2ConnectionClosed() async throws {
        var options = ProxyHarness.Options.servingTLS
        options.requestHeadTimeout = .seconds(1)
        options.idleTimeout = .seconds(4)
        try await ProxyHarness.run(options) { harness in
            // No stream at all, then one stream answered and nothing after it.
            let client = try await FrameLevelHTTP2Client.connect(harness, settings: nioDefaultSettings)
            #expect(try await eventually(timeout: .seconds(5)) { !client.channel.isActive })
            #expect(client.frames.contains { if case .goAway = $0.payload { return true } else { return false } })

            let used = try await FrameLevelHTTP2Client.connect(harness, settings: nioDefaultSettings)
            let block: HPACKHeaders = [
                ":method": "GET", ":scheme": "https", ":path": "/healthz", ":authority": "127.0.0.1",
            ]
            try await used.send(HTTP2Frame(streamID: 1, payload: .headers(.init(headers: block, endStream: true))))
            // Answered: the idle timeout runs now, not the request-head timeout.
            #expect(try await eventually(timeout: .seconds(5)) { used.frames.contains { $0.streamID == 1 } })
            try await Task.sleep(for: .milliseconds(1500))
            let goAwayEarly = used.frames.contains {
                if case .goAway = $0.payload { return true } else { return false }
            }
            #expect(!goAwayEarly, "GOAWAY after the request-head timeout, not the idle timeout")
            #expect(try await eventually(timeout: .seconds(10)) { !used.channel.isActive })
            let status = used.frames.lazy.compactMap { frame -> String? in
                if case .headers(let headers) = frame.payload { return headers.headers.first(name: ":status") }
                return nil
            }.first
            #expect(status == "200")
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

    @Test(
        "a keep-alive connection waits the idle timeout (kube-apiserver's 90 s), not the request-head timeout, for its next request, then is closed"
    )
    func idleAfterResponse() async throws {
        var options = ProxyHarness.Options()
        options.requestHeadTimeout = .seconds(1)
        options.idleTimeout = .seconds(4)
        try await ProxyHarness.run(options) { harness in
            let connection = try await RawConnection.connect(port: harness.port)
            for round in 1...2 {
                try await connection.send("GET /healthz HTTP/1.1\r\nHost: p\r\n\r\n")
                #expect(
                    try await connection.wait { $0.text.ranges(of: "HTTP/1.1 200").count == round },
                    "got: \(connection.text)")
                // Longer than the request-head timeout: a load balancer reusing the connection now
                // must find it open.
                try await Task.sleep(for: .milliseconds(1500))
                #expect(!connection.peerFinished, "closed after the request-head timeout, in round \(round)")
            }
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

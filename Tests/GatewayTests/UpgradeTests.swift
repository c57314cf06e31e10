import Issuers
import Logging
import Testbed
import Testing

@Suite("Upgraded connections: exec, attach, cp and port-forward")
struct UpgradeTests {
    private func upgradeRequest(token: String, path: String = "/testbed/spdy-echo")
        -> String
    {
        "POST \(path) HTTP/1.1\r\nHost: proxy\r\nAuthorization: Bearer \(token)\r\n"
            + "Connection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: portforward.k8s.io\r\n"
            + "Content-Length: 0\r\n\r\n"
    }

    @Test("a SPDY/3.1 upgrade is authenticated, answered 101 and spliced both ways, bytes after the 101 included")
    func spdySplice() async throws {
        try await ProxyHarness.run { harness in
            let connection = try await RawConnection.connect(port: harness.port)
            try await connection.send(upgradeRequest(token: try harness.issuer.mint()))
            let switched = try await connection.wait { $0.text.contains("upstream-ready\n") }
            #expect(switched, "got: \(connection.text)")
            #expect(connection.text.hasPrefix("HTTP/1.1 101 Switching Protocols\r\n"))
            #expect(connection.text.lowercased().contains("upgrade: spdy/3.1"))

            let request = try #require(harness.api.requests.first)
            #expect(request.values("Impersonate-User") == ["alice@example.com"])
            #expect(request.values("Authorization") == ["Bearer \(harness.api.expectedToken)"])
            #expect(request.values("Upgrade") == ["SPDY/3.1"])
            #expect(request.values("X-Stream-Protocol-Version") == ["portforward.k8s.io"])

            let before = connection.byteCount
            try await connection.send("ping through the splice\n")
            #expect(try await connection.wait { $0.text.hasSuffix("ping through the splice\n") })

            // A megabyte both ways: backpressure must neither lose nor reorder bytes.
            let payload = (0..<(1 << 20)).map { UInt8(truncatingIfNeeded: $0 % 251) }
            try await connection.send(payload)
            let expected = before + "ping through the splice\n".utf8.count + payload.count
            #expect(try await connection.wait(timeout: .seconds(30)) { $0.byteCount >= expected })
            await connection.close()
        }
    }

    @Test("closing the client side of a splice closes the upstream side, and the reverse")
    func spliceClosesTogether() async throws {
        try await ProxyHarness.run { harness in
            let connection = try await RawConnection.connect(port: harness.port)
            try await connection.send(upgradeRequest(token: try harness.issuer.mint()))
            #expect(try await connection.wait { $0.text.contains("upstream-ready\n") })
            // The echo upstream closes when its input ends; the client then sees the end too.
            try await connection.shutdownOutput()
            #expect(try await connection.wait { $0.peerFinished })
            // And the proxy is unharmed.
            #expect(try await harness.get("/version", token: try harness.issuer.mint()).status == 200)
        }
    }

    @Test("an upgrade with an invalid token: 401 Status JSON, the connection closed, nothing upstream")
    func upgradeWithBadToken() async throws {
        try await ProxyHarness.run { harness in
            let connection = try await RawConnection.connect(port: harness.port)
            try await connection.send(upgradeRequest(token: "not.a.token"))
            #expect(try await connection.wait { $0.peerFinished })
            #expect(connection.text.hasPrefix("HTTP/1.1 401 Unauthorized\r\n"))
            #expect(connection.text.hasSuffix(unauthorizedStatus))
            #expect(harness.api.requests.isEmpty)
        }
    }

    @Test("an upgrade the API server declines is relayed as a normal response and the connection ends")
    func declinedUpgrade() async throws {
        try await ProxyHarness.run { harness in
            let connection = try await RawConnection.connect(port: harness.port)
            try await connection.send(
                "GET /api/v1/namespaces HTTP/1.1\r\nHost: p\r\nAuthorization: Bearer \(try harness.issuer.mint())\r\n"
                    + "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
                    + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: v5.channel.k8s.io\r\n\r\n"
            )
            #expect(try await connection.wait { $0.peerFinished })
            #expect(connection.text.hasPrefix("HTTP/1.1 200 OK\r\n"))
            #expect(connection.text.contains(#""kind":"NamespaceList""#))
        }
    }

    @Test("a 101 to a request that asked for no upgrade is refused with 502, never spliced")
    func bogusSwitch() async throws {
        try await ProxyHarness.run { harness in
            let response = try await harness.get("/testbed/bogus-101", token: try harness.issuer.mint())
            #expect(response.status == 502)
            #expect(!response.body.contains("raw bytes"))
            #expect(try await harness.get("/version", token: try harness.issuer.mint()).status == 200)
        }
    }

    @Test("a client asserting Impersonate-* on an upgrade: 403, nothing upstream")
    func upgradeWithImpersonationHeader() async throws {
        try await ProxyHarness.run { harness in
            let connection = try await RawConnection.connect(port: harness.port)
            let request = upgradeRequest(token: try harness.issuer.mint())
                .replacingOccurrences(of: "\r\n\r\n", with: "\r\nImpersonate-User: admin\r\n\r\n")
            try await connection.send(request)
            #expect(try await connection.wait { $0.peerFinished })
            #expect(connection.text.hasPrefix("HTTP/1.1 403 Forbidden\r\n"))
            #expect(harness.api.requests.isEmpty)
        }
    }
}

@Suite("Header hygiene")
struct HeaderHygieneTests {
    @Test("hop-by-hop headers, those a Connection header names, Proxy-* and TE never reach the API server")
    func hopByHop() async throws {
        try await ProxyHarness.run { harness in
            let response = try await RawHTTPClient.send(
                "GET /version HTTP/1.1\r\nHost: p\r\nAuthorization: Bearer \(try harness.issuer.mint())\r\n"
                    + "Connection: close, X-Secret-Hop\r\nX-Secret-Hop: 1\r\nKeep-Alive: timeout=5\r\n"
                    + "Proxy-Authorization: Basic eDp5\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\n"
                    + "Upgrade: h2c\r\nX-Remote-Group: system:masters\r\nx-remote-extra-scopes: all\r\n"
                    + "X-Forwarded-For: 10.0.0.1\r\nX-Kept: yes\r\n\r\n",
                port: harness.port)
            #expect(response.status == 200)
            let request = try #require(harness.api.requests.first)
            let names = Set(request.headers.map { $0.name.lowercased() })
            for dropped in [
                "x-secret-hop", "keep-alive", "proxy-authorization", "proxy-connection", "te", "upgrade",
                "x-remote-group", "x-remote-extra-scopes", "connection",
            ] {
                #expect(!names.contains(dropped), "\(dropped) reached the API server")
            }
            #expect(request.values("X-Forwarded-For") == ["127.0.0.1"])
            #expect(request.values("X-Kept") == ["yes"])
            #expect(request.values("Host") == ["127.0.0.1:\(harness.api.port)"])
        }
    }

    @Test("Impersonate-* in any case, and with odd spacing, is refused")
    func impersonationVariants() async throws {
        try await ProxyHarness.run { harness in
            let token = try harness.issuer.mint()
            for header in [
                "impersonate-user: a", "IMPERSONATE-GROUP: b", "Impersonate-Uid:c", "Impersonate-Extra-X:  d",
            ] {
                let response = try await RawHTTPClient.send(
                    // Connection: close, so the answer ends with the connection, not the client's timeout.
                    "GET /version HTTP/1.1\r\nHost: p\r\nConnection: close\r\nAuthorization: Bearer \(token)\r\n"
                        + "\(header)\r\n\r\n",
                    port: harness.port)
                #expect(response.status == 403, "\(header)")
            }
            #expect(harness.api.requests.isEmpty)
        }
    }
}

@Suite("Long-lived upgraded sessions")
struct LongLivedSessionTests {
    @Test("a port-forward session carrying traffic for two minutes stays up, and quiet stretches do not end it")
    func twoMinuteSession() async throws {
        try await ProxyHarness.run { harness in
            let connection = try await harness.openEchoSession()
            // Mostly busy, sometimes quiet for longer than any request timeout of the proxy's.
            try await connection.echoRounds(for: .seconds(125)) { round in
                round % 20 == 0 ? .seconds(15) : .milliseconds(500)
            }
            #expect(!connection.peerFinished)
            await connection.close()
        }
    }
}

@Suite("The idle timeout of upgraded sessions")
struct UpgradeIdleTimeoutTests {
    @Test("with --upgrade-idle-timeout, traffic keeps a session up past the timeout, and silence ends it")
    func quietSessionEnds() async throws {
        var options = ProxyHarness.Options()
        // The margin between the pauses and the timeout is what a busy CI machine may stall
        // for without failing the test: 1.35 s.
        options.upgradeIdleTimeout = .milliseconds(1500)
        try await ProxyHarness.run(options) { harness in
            let connection = try await harness.openEchoSession()
            // More than twice the timeout, never quiet for more than a tenth of it.
            try await connection.echoRounds(for: .milliseconds(3500)) { _ in .milliseconds(150) }
            #expect(!connection.peerFinished, "the session ended while bytes were moving")
            // Now silence: the proxy closes the session (both sides) soon after the timeout.
            #expect(try await connection.wait(timeout: .seconds(10)) { $0.peerFinished })
            let upstreamEcho = harness.api.requests.filter { $0.path == "/testbed/spdy-echo" }
            #expect(upstreamEcho.count == 1)
            await connection.close()
        }
    }
}

@Suite("An upgraded session that ends at once")
struct UpgradeEndingAtOnceTests {
    @Test(
        "an API server that answers 101, sends its bytes and closes, all at once: the client gets all of it, then the close"
    )
    func answeredAndClosedAtOnce() async throws {
        let authority = try TestCertificateAuthority(commonName: "raw upstream CA")
        let upstream = try await RawTLSResponder.start(
            identity: try authority.issueServerCertificate(),
            response: "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\r\n"
                + "the whole session\n",
            closing: true)
        var options = ProxyHarness.Options()
        options.upstreamPort = upstream.port
        options.upstreamCAPEM = authority.certificatePEM
        try await ProxyHarness.run(options) { harness in
            for _ in 0..<5 {
                let connection = try await RawConnection.connect(port: harness.port)
                try await connection.send(
                    "POST /api/v1/namespaces/a/pods/b/exec?command=true HTTP/1.1\r\nHost: proxy\r\n"
                        + "Authorization: Bearer \(try harness.issuer.mint())\r\nConnection: Upgrade\r\n"
                        + "Upgrade: SPDY/3.1\r\nContent-Length: 0\r\n\r\n")
                #expect(try await connection.wait { $0.peerFinished }, "the proxy kept the connection open")
                #expect(connection.text.hasPrefix("HTTP/1.1 101 "), "got: \(connection.text)")
                #expect(connection.text.hasSuffix("\r\n\r\nthe whole session\n"), "got: \(connection.text)")
                await connection.close()
            }
        }
        await upstream.stop()
    }
}

@Suite("Upgraded sessions across a configuration reload")
struct UpgradeAcrossReloadTests {
    @Test("a spliced session opened before a reload keeps carrying bytes after it; new requests use the new mapping")
    func spliceSurvivesReload() async throws {
        try await ProxyHarness.run { harness in
            let connection = try await harness.openEchoSession()

            // A reload: a new issuer set with another groups prefix, adopting the old one's keys.
            let old = harness.current.current
            var configuration = old.configuration
            configuration.issuers[0].claimMappings.groupsPrefix = "reloaded:"
            var logger = Logger(label: "test")
            logger.logLevel = .critical
            let reloaded = try IssuerSet(configuration: configuration, logger: logger, adoptingKeysFrom: old)
            harness.current.replace(with: reloaded)
            await old.shutdown()

            try await connection.send("after the reload\n")
            #expect(try await connection.wait { $0.text.hasSuffix("after the reload\n") })
            #expect(!connection.peerFinished)

            _ = try await harness.get("/version", token: try harness.issuer.mint())
            #expect(harness.api.requests.last?.values("Impersonate-Group") == ["reloaded:developers"])
            await connection.close()
            await reloaded.shutdown()
        }
    }
}

extension ProxyHarness {
    /// A SPDY/3.1 upgrade to the stand-in's raw echo, spliced and ready.
    func openEchoSession(sourceLocation: SourceLocation = #_sourceLocation) async throws -> RawConnection {
        let connection = try await RawConnection.connect(port: port)
        try await connection.send(
            "POST /testbed/spdy-echo HTTP/1.1\r\nHost: proxy\r\n"
                + "Authorization: Bearer \(try issuer.mint())\r\nConnection: Upgrade\r\n"
                + "Upgrade: SPDY/3.1\r\nContent-Length: 0\r\n\r\n")
        #expect(try await connection.wait { $0.text.contains("upstream-ready\n") }, sourceLocation: sourceLocation)
        return connection
    }
}

extension RawConnection {
    /// Sends a numbered line and waits for its echo, again and again for `duration`, pausing
    /// `pause(round)` after each round.
    func echoRounds(
        for duration: Duration, sourceLocation: SourceLocation = #_sourceLocation, pause: (Int) -> Duration
    ) async throws {
        let started = ContinuousClock.now
        var round = 0
        while ContinuousClock.now - started < duration {
            round += 1
            let line = "round \(round)\n"
            try await send(line)
            #expect(
                try await wait { $0.text.hasSuffix(line) }, "round \(round) was not echoed",
                sourceLocation: sourceLocation)
            try await Task.sleep(for: pause(round))
        }
    }
}

import NIOCore
import NIOPosix
import Testbed
import Testing

@Suite("When the API server cannot answer")
struct UpstreamFailureTests {
    @Test("API server down: 503 Status JSON")
    func unreachable() async throws {
        let closed = try ClosedPort()
        var options = ProxyHarness.Options()
        options.upstreamPort = closed.port
        try await ProxyHarness.run(options) { harness in
            let response = try await harness.get("/api/v1/namespaces", token: try harness.issuer.mint())
            #expect(response.status == 503)
            #expect(response.body.contains(#""reason":"ServiceUnavailable""#))
            #expect(response.body.contains(#""code":503"#))
        }
        _ = closed
    }

    @Test("an API server whose certificate is not trusted: 502 Status JSON")
    func untrustedCertificate() async throws {
        var options = ProxyHarness.Options()
        options.upstreamCAPEM = try TestCertificateAuthority(commonName: "some other CA").certificatePEM
        try await ProxyHarness.run(options) { harness in
            let response = try await harness.get("/api/v1/namespaces", token: try harness.issuer.mint())
            #expect(response.status == 502)
            #expect(response.body.contains(#""kind":"Status""#))
            #expect(harness.api.requests.isEmpty)
        }
    }

    @Test("an upstream that does not speak TLS: 502 Status JSON")
    func upstreamWithoutTLS() async throws {
        let plain = try await TestHTTPServer.start(tls: nil) { _, writer in writer.respond(.ok, "{}") }
        var options = ProxyHarness.Options()
        options.upstreamPort = plain.port
        try await ProxyHarness.run(options) { harness in
            let response = try await harness.get("/api/v1/namespaces", token: try harness.issuer.mint())
            #expect(response.status == 502)
            #expect(response.body.contains(#""code":502"#))
        }
        await plain.stop()
    }

    @Test("an API server that does not answer in time: 504 Status JSON")
    func timeout() async throws {
        var options = ProxyHarness.Options()
        options.responseHeadTimeout = .milliseconds(300)
        try await ProxyHarness.run(options) { harness in
            let response = try await harness.get("/testbed/delay?ms=3000", token: try harness.issuer.mint())
            #expect(response.status == 504)
            #expect(response.body.contains(#""reason":"Timeout""#))
            // The proxy keeps serving afterwards.
            let next = try await harness.get("/version", token: try harness.issuer.mint())
            #expect(next.status == 200)
        }
    }

    @Test("an API server that hangs up without answering: 502, and the proxy keeps serving")
    func hangup() async throws {
        try await ProxyHarness.run { harness in
            let token = try harness.issuer.mint()
            let response = try await harness.get("/testbed/hangup", token: token)
            #expect(response.status == 502)
            #expect(try await harness.get("/version", token: token).status == 200)
        }
    }
}

@Suite("Health endpoints and HTTP limits")
struct HealthAndLimitsTests {
    @Test("/healthz and /livez answer ok without a token, and nothing goes upstream")
    func liveness() async throws {
        try await ProxyHarness.run { harness in
            for path in ["/healthz", "/livez"] {
                let response = try await harness.get(path, token: nil)
                #expect(response.status == 200)
                #expect(response.body == "ok")
            }
            #expect(harness.api.requests.isEmpty)
        }
    }

    @Test("/readyz is ok once the issuer's keys are loaded, in the Kubernetes verbose format")
    func readyWhenKeysLoaded() async throws {
        try await ProxyHarness.run { harness in
            let plain = try await harness.get("/readyz", token: nil)
            #expect(plain.status == 200)
            #expect(plain.body == "ok")
            let verbose = try await harness.get("/readyz?verbose", token: nil)
            #expect(verbose.status == 200)
            let name = harness.issuers.issuers[0].configuration.name
            #expect(
                verbose.body == "[+]ping ok\n[+]config ok\n[+]issuer-\(name) ok\n[+]shutdown ok\nreadyz check passed\n")
            #expect(try await harness.get("/readyz/issuer-\(name)", token: nil).body == "ok")
        }
    }

    @Test("/readyz fails while the issuer is down at start, and passes once it returns")
    func notReadyUntilIssuerUp() async throws {
        var options = ProxyHarness.Options()
        options.waitForKeys = false
        options.issuerAvailableAtStart = false
        try await ProxyHarness.run(options) { harness in
            try await Task.sleep(for: .milliseconds(300))
            let down = try await harness.get("/readyz?verbose", token: nil)
            #expect(down.status == 500)
            #expect(down.body.contains("[-]issuer-"))
            #expect(down.body.hasSuffix("readyz check failed\n"))
            // Tokens cannot be checked meanwhile: 401, nothing upstream.
            #expect(try await harness.get("/version", token: try harness.issuer.mint()).status == 401)
            harness.issuer.setAvailable(true)
            try await harness.waitUntilReady()
            #expect(try await harness.get("/readyz", token: nil).status == 200)
            #expect(try await harness.get("/version", token: try harness.issuer.mint()).status == 200)
        }
    }

    @Test("a header section over the limit: 431 Status JSON, and the proxy keeps serving")
    func oversizedHead() async throws {
        try await ProxyHarness.run { harness in
            let huge = String(repeating: "a", count: 100_000)
            let response = try await RawHTTPClient.send(
                "GET /version HTTP/1.1\r\nHost: p\r\nX-Big: \(huge)\r\n\r\n", port: harness.port)
            #expect(response.status == 431)
            #expect(response.body.contains(#""code":431"#))
            #expect(response.closedByServer)
            #expect(harness.api.requests.isEmpty)
            #expect(try await harness.get("/healthz", token: nil).status == 200)
        }
    }

    @Test("a 100 KB token: refused without reaching the API server")
    func hugeToken() async throws {
        try await ProxyHarness.run { harness in
            let token = String(repeating: "A", count: 100_000)
            let response = try await RawHTTPClient.send(
                "GET /version HTTP/1.1\r\nHost: p\r\nAuthorization: Bearer \(token)\r\n\r\n", port: harness.port)
            #expect(response.status == 431)
            #expect(harness.api.requests.isEmpty)
        }
    }

    @Test("malformed HTTP: 400 Status JSON and the connection closed")
    func malformedRequest() async throws {
        try await ProxyHarness.run { harness in
            let response = try await RawHTTPClient.send("GARBAGE\r\n\r\n", port: harness.port)
            #expect(response.status == 400)
            #expect(response.closedByServer)
            let smuggle = try await RawHTTPClient.send(
                "POST /api/v1/namespaces HTTP/1.1\r\nHost: p\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                port: harness.port)
            #expect(smuggle.status == 400)
            #expect(harness.api.requests.isEmpty)
        }
    }
}

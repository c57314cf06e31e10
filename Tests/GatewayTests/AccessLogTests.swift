import Gateway
import Testbed
import Testing

@Suite("The access log and what no log line or metric may contain", .serialized)
struct AccessLogTests {
    /// The access-log lines for `path`, waiting briefly for the last one to be written.
    private func accessLines(_ harness: ProxyHarness, count: Int) async throws -> [LogCapture.Entry] {
        let deadline = ContinuousClock.now + .seconds(5)
        while harness.logs.accessLines.count < count && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(10))
        }
        return harness.logs.accessLines
    }

    @Test("a success: issuer, user, groups, method, path without query, status, bytes, durations, client")
    func success() async throws {
        try await ProxyHarness.run { harness in
            let issuer = harness.issuers.issuers[0].configuration.name
            let response = try await harness.get("/api/v1/namespaces?limit=5", token: try harness.issuer.mint())
            #expect(response.status == 200)
            let line = try #require(try await accessLines(harness, count: 1).last)
            #expect(line.level == .info)
            #expect(line.metadata["issuer"] == issuer)
            #expect(line.metadata["user"] == "alice@example.com")
            #expect(line.metadata["groups"] == "developers")
            #expect(line.metadata["method"] == "GET")
            #expect(line.metadata["path"] == "/api/v1/namespaces")
            #expect(line.metadata["status"] == "200")
            #expect(line.metadata["bytes"] == String(response.body.utf8.count))
            #expect(line.metadata["client"] == "127.0.0.1")
            let duration = try #require(line.metadata["duration_ms"].flatMap(Double.init))
            let upstream = try #require(line.metadata["upstream_ms"].flatMap(Double.init))
            #expect(duration > 0 && upstream > 0 && upstream <= duration)
        }
    }

    @Test("an upgraded session is logged when it ends: status 101, its whole duration, the bytes the API server sent")
    func upgradeLoggedAtItsEnd() async throws {
        try await ProxyHarness.run { harness in
            let connection = try await harness.openEchoSession()
            let head = try #require(connection.text.range(of: "\r\n\r\n"))
            let headBytes = connection.text[..<head.upperBound].utf8.count
            let payload = String(repeating: "echo through the splice\n", count: 400)
            try await connection.send(payload)
            #expect(try await connection.wait { $0.text.hasSuffix(payload) })
            // Open for a while: no line yet.
            try await Task.sleep(for: .milliseconds(400))
            #expect(harness.logs.accessLines.isEmpty, "the session was logged while open")
            // Its start is logged at once, with who opened it.
            let start = try #require(harness.logs.all.first { $0.message == "upgraded session started" })
            #expect(start.level == .info)
            #expect(start.metadata["user"] == "alice@example.com" && start.metadata["groups"] == "developers")
            #expect(start.metadata["path"] == "/testbed/spdy-echo" && start.metadata["method"] == "POST")
            await connection.close()

            let line = try #require(try await accessLines(harness, count: 1).last)
            #expect(line.metadata["status"] == "101")
            #expect(line.metadata["method"] == "POST")
            #expect(line.metadata["user"] == "alice@example.com")
            // Everything after the 101's head: the echo server's greeting and the echoed bytes.
            #expect(line.metadata["bytes"] == String(connection.byteCount - headBytes))
            let duration = try #require(line.metadata["duration_ms"].flatMap(Double.init))
            let upstream = try #require(line.metadata["upstream_ms"].flatMap(Double.init))
            #expect(duration >= 400 && upstream < duration)
        }
    }

    @Test("a 401: the line has no identity and no upstream time; the failure is logged with its typed reason")
    func unauthorized() async throws {
        try await ProxyHarness.run { harness in
            let expired = try harness.issuer.mint(harness.issuer.claims(lifetime: -3600))
            #expect(try await harness.get("/api/v1/pods", token: expired).status == 401)
            let line = try #require(try await accessLines(harness, count: 1).last)
            #expect(line.metadata["status"] == "401")
            #expect(line.metadata["issuer"] == "-")
            #expect(line.metadata["user"] == "-")
            #expect(line.metadata["upstream_ms"] == "-")
            #expect(line.metadata["path"] == "/api/v1/pods")
            #expect(line.metadata["bytes"] == String(unauthorizedStatus.utf8.count))
            let failure = try #require(harness.logs.all.first { $0.message == "authentication failed" })
            #expect(failure.level == .info)
            #expect(failure.metadata["reason"] == "expired")
            #expect(failure.metadata["issuer"] == harness.issuers.issuers[0].configuration.name)
            #expect(harness.api.requests.isEmpty)
        }
    }

    @Test("a 403 for a reserved identity: status 403, the reason logged, nothing upstream")
    func forbidden() async throws {
        try await ProxyHarness.run { harness in
            let token = try harness.issuer.mint(harness.issuer.claims(email: "system:admin"))
            #expect(try await harness.get("/api/v1/secrets", token: token).status == 403)
            let line = try #require(try await accessLines(harness, count: 1).last)
            #expect(line.metadata["status"] == "403")
            #expect(line.metadata["method"] == "GET")
            #expect(line.metadata["path"] == "/api/v1/secrets")
            #expect(line.metadata["upstream_ms"] == "-")
            let failure = try #require(harness.logs.all.first { $0.message == "authentication failed" })
            #expect(failure.metadata["reason"] == "reserved_identity")
        }
    }

    @Test("no log line and no metric contains a token, whatever becomes of the request")
    func tokensNeverLeak() async throws {
        var options = ProxyHarness.Options()
        options.metricsListener = true
        try await ProxyHarness.run(options) { harness in
            let good = try harness.issuer.mint()
            let expired = try harness.issuer.mint(harness.issuer.claims(lifetime: -3600))
            let reserved = try harness.issuer.mint(harness.issuer.claims(email: "system:admin"))
            let stranger = try harness.issuer.mint(key: try TestSigningKey.rsa(kid: "stranger", slot: 1))
            let tampered = String(good.dropLast(4)) + "AAAA"
            let tokens = [good, expired, reserved, stranger, tampered, "not-a-jwt-but-a-secret-0123456789"]
            for token in tokens {
                _ = try await harness.get("/api/v1/namespaces?token=\(token)", token: token)
            }
            _ = try await harness.get("/version", token: nil, headers: [("Authorization", "Basic \(good)")])
            #expect(harness.logs.accessLines.count == tokens.count + 1)

            let logText = harness.logs.all.map(\.text).joined(separator: "\n")
            let metrics = try await harness.getMetricsListener("/metrics").body
            for token in tokens {
                // The whole token, and each of its parts long enough to identify it.
                let parts = token.split(separator: ".").filter { $0.count >= 16 }.map(String.init)
                for secret in [token] + parts {
                    #expect(!logText.contains(secret), "a log line contains (part of) a token")
                    #expect(!metrics.contains(secret), "a metric contains (part of) a token")
                }
            }
        }
    }
}

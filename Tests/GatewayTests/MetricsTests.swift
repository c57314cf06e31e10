import Gateway
import Issuers
import Testbed
import Testing

@Suite("/metrics on the metrics listener", .serialized)
struct MetricsTests {
    private let prefix = ProxyMetrics.prefix

    private func scrape(_ harness: ProxyHarness) async throws -> PrometheusText {
        let response = try await harness.getMetricsListener("/metrics")
        #expect(response.status == 200)
        return try PrometheusText(parsing: response.body)
    }

    private func upgradeRequest(token: String) -> String {
        "POST /testbed/spdy-echo HTTP/1.1\r\nHost: proxy\r\n"
            + "Authorization: Bearer \(token)\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
            + "X-Stream-Protocol-Version: portforward.k8s.io\r\nContent-Length: 0\r\n\r\n"
    }

    private func metricsOptions() -> ProxyHarness.Options {
        var options = ProxyHarness.Options()
        options.metricsListener = true
        return options
    }

    @Test("counters move with a success, a 401, a 403, an unknown issuer, an odd method and an upgrade")
    func countersMove() async throws {
        try await ProxyHarness.run(metricsOptions()) { harness in
            let issuer = harness.issuers.issuers[0].configuration.name
            let before = try await scrape(harness)
            func delta(_ after: PrometheusText, _ name: String, _ labels: [String: String]) -> Double {
                after.sum(prefix + name, labels) - before.sum(prefix + name, labels)
            }

            #expect(try await harness.get("/version", token: try harness.issuer.mint()).status == 200)
            #expect(try await harness.get("/version", token: nil).status == 401)
            let reserved = try harness.issuer.mint(harness.issuer.claims(email: "system:admin"))
            #expect(try await harness.get("/version", token: reserved).status == 403)
            let foreign = try harness.issuer.mint(harness.issuer.claims().setting("iss", "https://elsewhere.example"))
            #expect(try await harness.get("/version", token: foreign).status == 401)
            let propfind = try await RawHTTPClient.send(
                "PROPFIND /version HTTP/1.1\r\nHost: p\r\nAuthorization: Bearer \(try harness.issuer.mint())\r\n"
                    + "Connection: close\r\n\r\n", port: harness.port)
            let propfindStatus = try #require(propfind.status)

            let connection = try await RawConnection.connect(port: harness.port)
            try await connection.send(upgradeRequest(token: try harness.issuer.mint()))
            #expect(try await connection.wait { $0.text.contains("upstream-ready\n") })
            let during = try await scrape(harness)
            #expect(during.value(prefix + "upgraded_connections_open") == 1)
            await connection.close()

            var after = try await scrape(harness)
            let deadline = ContinuousClock.now + .seconds(10)
            while after.value(prefix + "upgraded_connections_open") != 0 && ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(20))
                after = try await scrape(harness)
            }
            #expect(after.value(prefix + "upgraded_connections_open") == 0)
            #expect(after.value(prefix + "requests_in_flight") == 0)

            #expect(delta(after, "requests_total", ["code": "200", "method": "GET"]) == 1)
            #expect(delta(after, "requests_total", ["code": "401", "method": "GET"]) == 2)
            #expect(delta(after, "requests_total", ["code": "403", "method": "GET"]) == 1)
            #expect(delta(after, "requests_total", ["code": "101", "method": "POST"]) == 1)
            #expect(delta(after, "requests_total", ["code": String(propfindStatus), "method": "OTHER"]) == 1)
            #expect(delta(after, "request_duration_seconds_count", ["method": "GET"]) == 4)

            #expect(delta(after, "authentication_attempts_total", ["issuer": issuer, "result": "success"]) == 3)
            #expect(
                delta(after, "authentication_attempts_total", ["issuer": "unknown", "reason": "no_token"]) == 1)
            #expect(
                delta(after, "authentication_attempts_total", ["issuer": "unknown", "reason": "unknown_issuer"]) == 1)
            #expect(
                delta(after, "authentication_attempts_total", ["issuer": issuer, "reason": "reserved_identity"]) == 1)
            #expect(delta(after, "token_verification_duration_seconds_count", [:]) == 5)

            #expect(after.types[prefix + "requests_total"] == "counter")
            #expect(after.types[prefix + "request_duration_seconds"] == "histogram")
            #expect(after.types[prefix + "requests_in_flight"] == "gauge")
            #expect(after.samples.allSatisfy { $0.name.hasPrefix(prefix) })
            // Bounded labels only: no method name from the client, no user, no group.
            let text = try await harness.getMetricsListener("/metrics").body
            for leaked in ["PROPFIND", "alice@example.com", "developers", "system:admin", "elsewhere"] {
                #expect(!text.contains(leaked), "\(leaked) in a label")
            }
        }
    }

    @Test("key fetches by issuer and result, with the last success time")
    func keyFetches() async throws {
        try await ProxyHarness.run(metricsOptions()) { harness in
            let issuer = harness.issuers.issuers[0].configuration.name
            let first = try await scrape(harness)
            #expect(first.value(prefix + "key_fetches_total", ["issuer": issuer, "result": "success"]) == 1)
            #expect(first.value(prefix + "key_fetches_total", ["issuer": issuer, "result": "failure"]) == 0)
            let time = try #require(
                first.value(prefix + "key_fetch_last_success_timestamp_seconds", ["issuer": issuer]))
            #expect(time > 1_700_000_000)
            #expect(first.value(prefix + "issuer_ready", ["issuer": issuer]) == 1)

            harness.issuer.setAvailable(false)
            let stranger = try TestSigningKey.rsa(kid: "stranger", slot: 1)
            #expect(try await harness.get("/version", token: try harness.issuer.mint(key: stranger)).status == 401)
            let second = try await scrape(harness)
            #expect(second.value(prefix + "key_fetches_total", ["issuer": issuer, "result": "failure"]) == 1)
            #expect(second.value(prefix + "key_fetches_total", ["issuer": issuer, "result": "success"]) == 1)
            // Refused after the refetch: still counted under the issuer the token named.
            #expect(
                second.value(prefix + "authentication_attempts_total", ["issuer": issuer, "reason": "unknown_key"]) == 1
            )
            // Scraping again counts nothing twice.
            let third = try await scrape(harness)
            #expect(third.value(prefix + "key_fetches_total", ["issuer": issuer, "result": "failure"]) == 1)
        }
    }

    @Test("a reload that renames an issuer moves its gauges to the new name")
    func issuerGaugesFollowReloads() async throws {
        try await ProxyHarness.run(metricsOptions()) { harness in
            let old = harness.issuers.issuers[0].configuration
            #expect(try await scrape(harness).value(prefix + "issuer_ready", ["issuer": old.name]) == 1)
            var configuration = harness.issuers.configuration
            configuration.issuers[0].name = "renamed"
            harness.current.replace(
                with: try IssuerSet(
                    configuration: configuration, logger: harness.logs.logger(), adoptingKeysFrom: harness.issuers))
            let after = try await scrape(harness)
            #expect(after.value(prefix + "issuer_ready", ["issuer": "renamed"]) == 1)
            #expect(after.value(prefix + "key_fetch_last_success_timestamp_seconds", ["issuer": "renamed"]) != nil)
            #expect(after.value(prefix + "issuer_ready", ["issuer": old.name]) == nil)
            #expect(after.value(prefix + "key_fetch_last_success_timestamp_seconds", ["issuer": old.name]) == nil)
        }
    }

    @Test("config reloads by result, the last success time and the loaded config's hash")
    func reloads() async throws {
        try await ProxyHarness.run(metricsOptions()) { harness in
            harness.reloadStatus.recordInitialLoad(sha256: "aaaa")
            let start = try await scrape(harness)
            #expect(start.value(prefix + "config_info", ["sha256": "aaaa"]) == 1)
            #expect(start.value(prefix + "config_reloads_total", ["result": "success"]) == 0)
            #expect(start.value(prefix + "config_reloads_total", ["result": "failure"]) == 0)
            #expect((start.value(prefix + "config_last_reload_success_timestamp_seconds") ?? 0) > 1_700_000_000)

            harness.reloadStatus.recordFailure()
            harness.reloadStatus.recordSuccess(sha256: "bbbb")
            harness.reloadStatus.recordFailure()
            let later = try await scrape(harness)
            #expect(later.value(prefix + "config_reloads_total", ["result": "success"]) == 1)
            #expect(later.value(prefix + "config_reloads_total", ["result": "failure"]) == 2)
            #expect(later.value(prefix + "config_info", ["sha256": "bbbb"]) == 1)
            #expect(later.value(prefix + "config_info", ["sha256": "aaaa"]) == nil)
        }
    }

    @Test("upstream errors by kind; token cache hits and misses")
    func upstreamErrors() async throws {
        let closed = try ClosedPort()
        var options = metricsOptions()
        options.upstreamPort = closed.port
        try await ProxyHarness.run(options) { harness in
            let token = try harness.issuer.mint()
            #expect(try await harness.get("/version", token: token).status == 503)
            #expect(try await harness.get("/version", token: token).status == 503)
            let after = try await scrape(harness)
            #expect(after.value(prefix + "upstream_errors_total", ["kind": "unreachable"]) == 2)
            #expect(after.value(prefix + "requests_total", ["code": "503", "method": "GET"]) == 2)
            #expect(after.value(prefix + "token_cache_requests_total", ["result": "miss"]) == 1)
            #expect(after.value(prefix + "token_cache_requests_total", ["result": "hit"]) == 1)
        }
        _ = closed
    }

    @Test("the metrics listener serves health, 404 elsewhere, and proxies nothing")
    func metricsListenerPaths() async throws {
        try await ProxyHarness.run(metricsOptions()) { harness in
            #expect(try await harness.getMetricsListener("/healthz").body == "ok")
            #expect(try await harness.getMetricsListener("/livez").body == "ok")
            let ready = try await harness.getMetricsListener("/readyz?verbose")
            #expect(ready.status == 200)
            #expect(ready.body == (try await harness.get("/readyz?verbose", token: nil)).body)
            #expect(try await harness.getMetricsListener("/version").status == 404)
            #expect(harness.api.requests.isEmpty)
        }
    }
}

import Config
import Issuers
import Testbed
import Testing

@testable import Gateway

@Suite("/readyz in the Kubernetes components' format", .serialized)
struct ReadinessTests {
    private func waitUntil(_ condition: () -> Bool) async throws {
        let deadline = ContinuousClock.now + .seconds(30)
        while !condition() {
            guard ContinuousClock.now < deadline else { throw TestbedError("condition never held") }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    @Test("an issuer down at start: [-] line with the reason, 500 for /readyz and for its own check")
    func issuerDownAtStart() async throws {
        var options = ProxyHarness.Options()
        options.waitForKeys = false
        options.issuerAvailableAtStart = false
        try await ProxyHarness.run(options) { harness in
            let name = harness.issuers.issuers[0].configuration.name
            try await waitUntil { harness.issuers.issuers[0].fetchCounts.failures > 0 }
            let plain = try await harness.get("/readyz", token: nil)
            #expect(plain.status == 500)
            #expect(plain.body.contains("[-]issuer-\(name) failed: signing keys not fetched yet: "))
            #expect(plain.body.hasSuffix("readyz check failed\n"))
            let single = try await harness.get("/readyz/issuer-\(name)", token: nil)
            #expect(single.status == 500)
            #expect(single.body.hasPrefix("internal server error: signing keys not fetched yet"))
            #expect(try await harness.get("/readyz/ping", token: nil).body == "ok")
            #expect(try await harness.get("/readyz/config", token: nil).status == 200)
            #expect(try await harness.get("/readyz/no-such-check", token: nil).status == 404)
            // Liveness does not depend on the issuers.
            #expect(try await harness.get("/livez", token: nil).status == 200)
        }
    }

    @Test("an issuer that goes down after being ready: still ready, reported stale with the reason")
    func staleButReady() async throws {
        try await ProxyHarness.run { harness in
            let name = harness.issuers.issuers[0].configuration.name
            harness.issuer.setAvailable(false)
            // A token signed by an unknown key makes the proxy refetch; the refetch fails.
            let stranger = try TestSigningKey.rsa(kid: "stranger", slot: 1)
            let token = try harness.issuer.mint(key: stranger)
            #expect(try await harness.get("/version", token: token).status == 401)
            try await waitUntil { if case .stale = harness.issuers.issuers[0].status { true } else { false } }

            let plain = try await harness.get("/readyz", token: nil)
            #expect(plain.status == 200)
            #expect(plain.body == "ok")
            let verbose = try await harness.get("/readyz?verbose", token: nil)
            #expect(verbose.status == 200)
            let line = try #require(verbose.body.split(separator: "\n").first { $0.hasPrefix("[+]issuer-\(name) ") })
            #expect(line.hasPrefix("[+]issuer-\(name) ok (keys stale: last refresh failed: "))
            #expect(line.hasSuffix(")"))
            #expect(verbose.body.hasSuffix("readyz check passed\n"))
            #expect(try await harness.get("/readyz/issuer-\(name)", token: nil).body == "ok")
            // Tokens signed by the last good keys still work.
            #expect(try await harness.get("/version", token: try harness.issuer.mint()).status == 200)
        }
    }

    @Test("readiness all needs every issuer; readiness any needs one, and reports the others")
    func allVersusAny() async throws {
        for policy in [ReadinessPolicy.all, .any] {
            let second = try await StandInIssuer()
            second.setAvailable(false)
            var options = ProxyHarness.Options()
            options.waitForKeys = false
            options.readiness = policy
            options.extraIssuers = [second]
            try await ProxyHarness.run(options) { harness in
                try await waitUntil {
                    harness.issuers.issuers[0].status.isReady && harness.issuers.issuers[1].fetchCounts.failures > 0
                }
                let first = harness.issuers.issuers[0].configuration.name
                let verbose = try await harness.get("/readyz?verbose", token: nil)
                #expect(verbose.body.contains("[+]issuer-\(first) ok\n"))
                switch policy {
                case .all:
                    #expect(verbose.status == 500)
                    #expect(verbose.body.contains("[-]issuer-extra-0 failed: signing keys not fetched yet"))
                    #expect(try await harness.get("/readyz", token: nil).status == 500)
                case .any:
                    #expect(verbose.status == 200)
                    #expect(
                        verbose.body.contains(
                            "[+]issuer-extra-0 ok (not required with readiness any: signing keys not fetched yet"))
                    #expect(try await harness.get("/readyz", token: nil).body == "ok")
                }
                // Its own check answers for the issuer itself, whatever the policy.
                let own = try await harness.get("/readyz/issuer-extra-0", token: nil)
                #expect(own.status == (policy == .all ? 500 : 200))
            }
            await second.stop()
        }
    }

    @Test("?exclude skips checks (repeatable); an unknown name is warned about")
    func exclude() async throws {
        let second = try await StandInIssuer()
        second.setAvailable(false)
        var options = ProxyHarness.Options()
        options.waitForKeys = false
        options.extraIssuers = [second]
        try await ProxyHarness.run(options) { harness in
            try await waitUntil { harness.issuers.issuers[0].status.isReady }
            #expect(try await harness.get("/readyz", token: nil).status == 500)
            let excluded = try await harness.get("/readyz?exclude=issuer-extra-0", token: nil)
            #expect(excluded.status == 200)
            #expect(excluded.body == "ok")
            let verbose = try await harness.get("/readyz?verbose&exclude=issuer-extra-0&exclude=ping", token: nil)
            #expect(verbose.status == 200)
            #expect(verbose.body.contains("[+]ping excluded: ok\n"))
            #expect(verbose.body.contains("[+]issuer-extra-0 excluded: ok\n"))
            #expect(verbose.body.hasSuffix("readyz check passed\n"))
            let unknown = try await harness.get("/readyz?verbose&exclude=bogus", token: nil)
            #expect(unknown.status == 500)
            #expect(unknown.body.contains("warn: some health checks cannot be excluded: no matches for \"bogus\"\n"))
        }
        await second.stop()
    }

    @Test("shutdown fails /readyz at once, on both listeners; /healthz stays ok")
    func shutdown() async throws {
        var options = ProxyHarness.Options()
        options.metricsListener = true
        try await ProxyHarness.run(options) { harness in
            #expect(try await harness.getMetricsListener("/readyz").status == 200)
            harness.health.beginShutdown()
            let proxy = try await harness.get("/readyz?verbose", token: nil)
            #expect(proxy.status == 500)
            #expect(proxy.body.contains("[-]shutdown failed: the proxy is shutting down\n"))
            let metrics = try await harness.getMetricsListener("/readyz?verbose")
            #expect(metrics.status == 500)
            #expect(metrics.body == proxy.body)
            #expect(try await harness.getMetricsListener("/readyz/shutdown").status == 500)
            #expect(try await harness.get("/healthz", token: nil).status == 200)
            #expect(try await harness.getMetricsListener("/healthz").body == "ok")
        }
    }

    @Test("a reload changes the checks live: a renamed issuer gets its new check name")
    func reloadChangesChecks() async throws {
        try await ProxyHarness.run { harness in
            let old = harness.issuers.issuers[0].configuration
            var renamed = old
            renamed.name = "renamed"
            var configuration = harness.issuers.configuration
            configuration.issuers = [renamed]
            let next = try IssuerSet(
                configuration: configuration, logger: harness.logs.logger(), adoptingKeysFrom: harness.issuers)
            harness.current.replace(with: next)
            let verbose = try await harness.get("/readyz?verbose", token: nil)
            #expect(verbose.status == 200)
            #expect(
                verbose.body == "[+]ping ok\n[+]config ok\n[+]issuer-renamed ok\n[+]shutdown ok\nreadyz check passed\n")
            #expect(try await harness.get("/readyz/issuer-\(old.name)", token: nil).status == 404)
            #expect(try await harness.get("/readyz/issuer-renamed", token: nil).body == "ok")
        }
    }

    @Test("health reasons never carry a token or URL credentials, and stay on one bounded line")
    func reasonsAreSanitized() {
        let token = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJodHRwczovL2V4YW1wbGUifQ.c2lnbmF0dXJlLWJ5dGVz"
        let reason = HealthReason.sanitize(
            "fetch https://user:hunter2@idp.example.com/keys failed\nwith \"\(token)\" echoed\r\u{0}back")
        #expect(!reason.contains(token))
        #expect(!reason.contains("hunter2"))
        #expect(!reason.contains("\n") && !reason.contains("\r") && !reason.contains("\u{0}"))
        #expect(reason.contains("https://[redacted]@idp.example.com/keys"))
        #expect(reason.contains("[redacted token]"))
        for harmless in ["HTTP 503 from https://idp.example.com", "issuer identity.provider.example.com differs"] {
            #expect(HealthReason.sanitize(harmless) == harmless)
        }
        let long = HealthReason.sanitize(String(repeating: "word ", count: 200))
        #expect(long.count <= HealthReason.maximumLength + 3)
    }
}

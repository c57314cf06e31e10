import Config
import Issuers
import Logging
import Testbed
import Testing

@testable import Gateway

/// `/readyz` follows the current snapshot: a reload that changes `readiness` changes the answer.
@Suite("Readiness follows the current configuration snapshot")
struct ReadinessSnapshotTests {
    @Test("readiness all → any by a reload turns /readyz from failing to passing, in the same format")
    func readinessPolicyFollowsReload() async throws {
        let idp = try await StandInIssuer()
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let timing = KeyRefreshTiming(
            initialBackoff: .milliseconds(50), maximumBackoff: .milliseconds(100), refreshInterval: .seconds(600))
        // The second issuer is never reachable: nothing listens on port 1.
        var configuration = ProxyConfiguration(issuers: [
            IssuerConfiguration(
                url: idp.url, audiences: ["k"], certificateAuthorityPEM: idp.certificateAuthority.certificatePEM,
                name: "up"),
            IssuerConfiguration(url: "https://127.0.0.1:1", audiences: ["k"], name: "down"),
        ])
        let first = try IssuerSet(configuration: configuration, timing: timing, logger: logger)
        let current = CurrentIssuers(first)
        let health = HealthEndpoints(issuers: current)
        let deadline = ContinuousClock.now + .seconds(10)
        while !first.issuers[0].status.isReady && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        let failing = health.answer(path: "/readyz", query: "verbose")
        #expect(failing.status == .internalServerError)
        #expect(failing.body.hasPrefix("[+]ping ok\n[+]config ok\n[+]issuer-up ok\n[-]issuer-down failed: "))
        #expect(failing.body.hasSuffix("[+]shutdown ok\nreadyz check failed\n"))

        configuration.readiness = .any
        let second = try IssuerSet(
            configuration: configuration, timing: timing, logger: logger, adoptingKeysFrom: first)
        await current.replace(with: second).shutdown()
        let passing = health.answer(path: "/readyz", query: "verbose")
        #expect(passing.status == .ok)
        // The issuer that is down no longer fails the check, and still says why it is not ready.
        #expect(
            passing.body.hasPrefix(
                "[+]ping ok\n[+]config ok\n[+]issuer-up ok\n"
                    + "[+]issuer-down ok (not required with readiness any: signing keys not fetched yet"))
        #expect(passing.body.hasSuffix(")\n[+]shutdown ok\nreadyz check passed\n"))
        await second.shutdown()
        await idp.stop()
    }
}

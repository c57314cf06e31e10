import Config
import Logging
import Testbed
import Testing

@testable import Issuers

/// A reload builds a new IssuerSet; issuers whose URL, discovery URL and CA are unchanged keep
/// their keys, and key sources no set uses any more stop.
@Suite("Key sources across reloads")
struct KeySourceAdoptionTests {
    private static let timing = KeyRefreshTiming(
        initialBackoff: .milliseconds(50), maximumBackoff: .milliseconds(100), refreshInterval: .seconds(600),
        minimumRefetchInterval: .milliseconds(500))

    private func configuration(_ idp: StandInIssuer, groupsPrefix: String = "", discoveryURL: String? = nil)
        -> ProxyConfiguration
    {
        ProxyConfiguration(issuers: [
            IssuerConfiguration(
                url: idp.url, discoveryURL: discoveryURL, audiences: ["kubernetes"],
                certificateAuthorityPEM: idp.certificateAuthority.certificatePEM,
                claimMappings: ClaimMappings(groupsPrefix: groupsPrefix))
        ])
    }

    private func waitUntilReady(_ issuers: IssuerSet) async throws {
        let deadline = ContinuousClock.now + .seconds(10)
        while !issuers.issuers.allSatisfy({ $0.status.isReady }) {
            guard ContinuousClock.now < deadline else { throw TestbedError("keys never loaded") }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    @Test("an unchanged key source is adopted with its keys; a changed one starts afresh; retired ones stop")
    func adoption() async throws {
        let idp = try await StandInIssuer()
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let first = try IssuerSet(configuration: configuration(idp), timing: Self.timing, logger: logger)
        try await waitUntilReady(first)
        #expect(idp.discoveryFetches == 1)

        let second = try IssuerSet(
            configuration: configuration(idp, groupsPrefix: "new:"), timing: Self.timing, logger: logger,
            adoptingKeysFrom: first)
        #expect(second.issuers[0].sharesKeys(with: first.issuers[0]))
        #expect(second.issuers[0].status == .ready, "adopted keys are there at once")
        await first.shutdown()
        #expect(!second.issuers[0].keySource.isRetired, "a source another set still uses keeps running")
        guard case .authenticated(let identity) = second.authenticate(token: try idp.mint()) else {
            Issue.record("the adopted keys should verify the token")
            return
        }
        #expect(identity.groups == ["new:developers"])
        #expect(idp.discoveryFetches == 1)

        let third = try IssuerSet(
            configuration: configuration(idp, discoveryURL: idp.url + "/.well-known/openid-configuration"),
            timing: Self.timing, logger: logger, adoptingKeysFrom: second)
        #expect(!third.issuers[0].sharesKeys(with: second.issuers[0]))
        try await waitUntilReady(third)
        #expect(idp.discoveryFetches == 2)
        await second.shutdown()
        #expect(second.issuers[0].keySource.isRetired)
        #expect(await second.issuers[0].refetchForUnverifiedToken() == nil, "a retired source never fetches again")
        #expect(!third.issuers[0].keySource.isRetired)
        await third.shutdown()
        await third.shutdown()
        #expect(third.issuers[0].keySource.isRetired)
        await idp.stop()
    }

    @Test("a set that fails to build (a CA that does not parse) starts nothing")
    func failedSetStartsNothing() async throws {
        let idp = try await StandInIssuer()
        var configuration = configuration(idp)
        configuration.issuers.append(
            IssuerConfiguration(
                url: "https://other.example.com", audiences: ["k"],
                certificateAuthorityPEM: "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"))
        #expect(throws: IssuerSetupError.self) {
            _ = try IssuerSet(configuration: configuration, timing: Self.timing, logger: Logger(label: "test"))
        }
        try await Task.sleep(for: .milliseconds(200))
        #expect(idp.discoveryFetches == 0)
        await idp.stop()
    }
}

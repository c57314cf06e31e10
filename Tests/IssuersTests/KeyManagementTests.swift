import Config
import Logging
import Testbed
import Testing

@testable import Issuers

/// Discovery, JWKS fetching, refresh and refetch against a real HTTPS identity provider.
@Suite("Issuer keys: discovery, rotation, outages and refetch limits")
struct KeyManagementTests {
    private static let timing = KeyRefreshTiming(
        initialBackoff: .milliseconds(50), maximumBackoff: .milliseconds(100), refreshInterval: .seconds(600),
        minimumRefetchInterval: .milliseconds(500))

    /// Runs `body` with an IssuerSet for `idp` (its key refresh starts with the set).
    private func withIssuers<T>(
        _ idp: StandInIssuer, timing: KeyRefreshTiming = KeyManagementTests.timing,
        configure: (inout IssuerConfiguration) -> Void = { _ in },
        _ body: (IssuerSet) async throws -> T
    ) async throws -> T {
        var issuerConfiguration = IssuerConfiguration(
            url: idp.url, audiences: ["kubernetes"], certificateAuthorityPEM: idp.certificateAuthority.certificatePEM)
        configure(&issuerConfiguration)
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let issuers = try IssuerSet(
            configuration: ProxyConfiguration(issuers: [issuerConfiguration]), timing: timing, logger: logger)
        do {
            let result = try await body(issuers)
            await issuers.shutdown()
            return result
        } catch {
            await issuers.shutdown()
            throw error
        }
    }

    private func waitUntilReady(_ issuers: IssuerSet, timeout: Duration = .seconds(30)) async throws {
        let deadline = ContinuousClock.now + timeout
        while !issuers.issuers[0].status.isReady {
            guard ContinuousClock.now < deadline else { throw TestbedError("keys never loaded") }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    /// Authenticates like the gateway: the synchronous attempt, then a refetch if it asks for one.
    private func authenticate(_ issuers: IssuerSet, _ token: String) async -> Result<Identity, TokenRejection> {
        switch issuers.authenticate(token: token) {
        case .authenticated(let identity): return .success(identity)
        case .rejected(let rejection, _): return .failure(rejection)
        case .needsKeyRefetch: return await issuers.authenticateAfterRefetch(token: token)
        }
    }

    @Test("keys are fetched through discovery with the issuer's own CA, and tokens verify")
    func discoveryAndVerification() async throws {
        let idp = try await StandInIssuer(keys: [try .rsa(kid: "r"), .p256(kid: "e")])
        try await withIssuers(idp) { issuers in
            try await waitUntilReady(issuers)
            #expect(idp.discoveryFetches == 1)
            for key in idp.keys {
                #expect(try await authenticate(issuers, idp.mint(key: key)).identity?.username == "alice@example.com")
            }
        }
        await idp.stop()
    }

    @Test("an issuer URL with a path uses <url>/.well-known/openid-configuration")
    func issuerWithPath() async throws {
        let idp = try await StandInIssuer(path: "/realms/team")
        try await withIssuers(idp) { issuers in
            try await waitUntilReady(issuers)
            #expect(try await authenticate(issuers, idp.mint()).identity != nil)
        }
        await idp.stop()
    }

    @Test("a discovery document naming another issuer keeps the issuer not ready")
    func discoveryIssuerMismatch() async throws {
        let idp = try await StandInIssuer()
        idp.setDiscoveryIssuer("https://impostor.example.com")
        try await withIssuers(idp) { issuers in
            let deadline = ContinuousClock.now + .seconds(30)
            while case .notLoaded(nil) = issuers.issuers[0].status, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(20))
            }
            guard case .notLoaded(let error?) = issuers.issuers[0].status else {
                Issue.record("expected not loaded, got \(issuers.issuers[0].status)")
                return
            }
            #expect(error.contains("impostor.example.com"))
            #expect(try await authenticate(issuers, idp.mint()).rejection == .keysUnavailable)
        }
        await idp.stop()
    }

    @Test("a key rotation at the IdP is picked up when a token names the new kid")
    func rotation() async throws {
        let idp = try await StandInIssuer()
        try await withIssuers(idp) { issuers in
            try await waitUntilReady(issuers)
            let newKey = try TestSigningKey.rsa(kid: "rsa-2", slot: 2)
            idp.publish(keys: [newKey])
            try await Task.sleep(for: .milliseconds(600))  // past the refetch rate limit
            #expect(try await authenticate(issuers, idp.mint(key: newKey)).identity != nil)
        }
        await idp.stop()
    }

    @Test("with the IdP down after keys were loaded, tokens still verify")
    func idpDownAfterLoad() async throws {
        let idp = try await StandInIssuer()
        try await withIssuers(idp) { issuers in
            try await waitUntilReady(issuers)
            idp.setAvailable(false)
            // An unknown kid forces a refetch, which fails; the old keys stay.
            _ = await authenticate(issuers, try idp.mint(key: try .rsa(kid: "junk", slot: 1)))
            #expect(try await authenticate(issuers, idp.mint()).identity != nil)
            guard case .stale = issuers.issuers[0].status else {
                Issue.record("expected stale, got \(issuers.issuers[0].status)")
                return
            }
        }
        await idp.stop()
    }

    @Test("with the IdP down at start the issuer is not ready, and it becomes ready when the IdP returns")
    func idpDownAtStart() async throws {
        let idp = try await StandInIssuer()
        idp.setAvailable(false)
        try await withIssuers(idp) { issuers in
            try await Task.sleep(for: .milliseconds(300))
            #expect(!issuers.issuers[0].status.isReady)
            #expect(try await authenticate(issuers, idp.mint()).rejection == .keysUnavailable)
            idp.setAvailable(true)
            try await waitUntilReady(issuers)
            #expect(try await authenticate(issuers, idp.mint()).identity != nil)
        }
        await idp.stop()
    }

    @Test("1000 junk tokens with unknown kids cause at most one JWKS fetch per rate-limit interval")
    func refetchRateLimit() async throws {
        let idp = try await StandInIssuer()
        var timing = Self.timing
        timing.minimumRefetchInterval = .seconds(30)
        try await withIssuers(idp, timing: timing) { issuers in
            try await waitUntilReady(issuers)
            let junkKey = try TestSigningKey.rsa(kid: "junk-0", slot: 1)
            let claims = idp.claims()
            let tokens = try (0..<1000).map { index in
                try TokenMinter.mint(
                    claims: claims, key: junkKey, header: ["alg": "RS256", "kid": .string("junk-\(index)")])
            }
            let before = idp.jwksFetches
            let started = ContinuousClock.now
            await withTaskGroup(of: Void.self) { group in
                for token in tokens {
                    group.addTask {
                        let result = await authenticate(issuers, token)
                        #expect(result.rejection == .unknownKey)
                    }
                }
            }
            // At most one refetch per minimum interval (plus the first and one in flight at the
            // end), however slow the machine: never one per token.
            let windows = Int((ContinuousClock.now - started) / timing.minimumRefetchInterval)
            #expect(idp.jwksFetches - before <= windows + 2)
            #expect(idp.jwksFetches - before < 50)
        }
        await idp.stop()
    }

    @Test("a token for no configured issuer is refused without any key work")
    func unknownIssuerCostsNothing() async throws {
        let idp = try await StandInIssuer()
        try await withIssuers(idp) { issuers in
            try await waitUntilReady(issuers)
            let before = idp.jwksFetches
            let token = try idp.mint(idp.claims().setting("iss", "https://elsewhere.example.com"))
            guard case .rejected(.unknownIssuer, nil) = issuers.authenticate(token: token) else {
                Issue.record("expected an immediate unknown-issuer rejection")
                return
            }
            #expect(idp.jwksFetches == before)
        }
        await idp.stop()
    }

    @Test("an issuer CA that is not PEM is a setup error naming the issuer")
    func badCertificateAuthority() throws {
        let configuration = ProxyConfiguration(issuers: [
            IssuerConfiguration(
                url: "https://idp.example.com", audiences: ["k"],
                certificateAuthorityPEM: "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
        ])
        #expect(throws: IssuerSetupError.self) {
            _ = try IssuerSet(configuration: configuration, logger: Logger(label: "test"))
        }
    }
}

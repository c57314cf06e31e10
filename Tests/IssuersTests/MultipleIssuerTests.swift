import Config
import Logging
import Testbed
import Testing

@testable import Issuers

/// Several issuers in one `IssuerSet`, each a real HTTPS stand-in with its own CA and keys:
/// a token is routed by its exact unverified `iss`, and only that issuer's keys can vouch for it.
@Suite("Several issuers: routing by iss, key isolation")
struct MultipleIssuerTests {
    private static let timing = KeyRefreshTiming(
        initialBackoff: .milliseconds(50), maximumBackoff: .milliseconds(100), refreshInterval: .seconds(600),
        minimumRefetchInterval: .milliseconds(200))

    /// Three identity providers with distinct keys: A (RSA), B (another RSA key), C (P-256).
    private struct Providers {
        let a: StandInIssuer
        let b: StandInIssuer
        let c: StandInIssuer

        init() async throws {
            a = try await StandInIssuer(keys: [try .rsa(kid: "a-key", slot: 0)])
            b = try await StandInIssuer(keys: [try .rsa(kid: "b-key", slot: 1)])
            c = try await StandInIssuer(keys: [.p256(kid: "c-key")])
        }

        var all: [StandInIssuer] { [a, b, c] }

        func stop() async {
            for idp in all { await idp.stop() }
        }
    }

    private func configuration(_ idp: StandInIssuer, name: String, groupsPrefix: String = "") -> IssuerConfiguration {
        IssuerConfiguration(
            url: idp.url, audiences: ["kubernetes"], certificateAuthorityPEM: idp.certificateAuthority.certificatePEM,
            name: name, claimMappings: ClaimMappings(groupsPrefix: groupsPrefix))
    }

    /// Runs `body` with an IssuerSet for the three providers, all keys loaded.
    private func withIssuers<T>(
        _ providers: Providers, tokenCacheTTL: Duration = .zero, _ body: (IssuerSet) async throws -> T
    ) async throws -> T {
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let configuration = ProxyConfiguration(
            issuers: [
                configuration(providers.a, name: "idp-a", groupsPrefix: "a:"),
                configuration(providers.b, name: "idp-b", groupsPrefix: "b:"),
                configuration(providers.c, name: "idp-c", groupsPrefix: "c:"),
            ],
            tokenCacheTTL: tokenCacheTTL)
        let issuers = try IssuerSet(configuration: configuration, timing: Self.timing, logger: logger)
        do {
            let deadline = ContinuousClock.now + .seconds(30)
            while !issuers.issuers.allSatisfy(\.status.isReady) {
                guard ContinuousClock.now < deadline else { throw TestbedError("keys never loaded") }
                try await Task.sleep(for: .milliseconds(20))
            }
            let result = try await body(issuers)
            await issuers.shutdown()
            return result
        } catch {
            await issuers.shutdown()
            throw error
        }
    }

    private func authenticate(_ issuers: IssuerSet, _ token: String) async -> Result<Identity, TokenRejection> {
        switch issuers.authenticate(token: token) {
        case .authenticated(let identity): return .success(identity)
        case .rejected(let rejection, _): return .failure(rejection)
        case .needsKeyRefetch: return await issuers.authenticateAfterRefetch(token: token)
        }
    }

    @Test("each issuer's tokens verify with its keys and map with its own claim mappings")
    func routing() async throws {
        let providers = try await Providers()
        try await withIssuers(providers) { issuers in
            for (idp, name, prefix) in [
                (providers.a, "idp-a", "a:"), (providers.b, "idp-b", "b:"), (providers.c, "idp-c", "c:"),
            ] {
                let identity = try await authenticate(issuers, idp.mint()).identity
                #expect(identity?.issuerName == name)
                #expect(identity?.groups == [prefix + "developers"])
                #expect(identity?.username == "alice@example.com")
            }
        }
        await providers.stop()
    }

    @Test("a token claiming issuer A but signed with issuer B's key is refused")
    func crossIssuerSignature() async throws {
        let providers = try await Providers()
        try await withIssuers(providers) { issuers in
            let bKey = providers.b.keys[0]
            // B's kid is unknown to A: a (rate-limited) refetch of A's keys finds it no better.
            let claimingA = try providers.a.mint(providers.a.claims(), key: bKey)
            #expect(await authenticate(issuers, claimingA).rejection == .unknownKey)
            // Relabelled with A's kid, the signature simply does not verify under A's key.
            let relabelled = try providers.a.mint(
                providers.a.claims(), key: bKey, header: ["alg": "RS256", "kid": "a-key"])
            #expect(await authenticate(issuers, relabelled).rejection == .invalidSignature)
            // Without a kid, A's keys are all tried and none verifies.
            let noKeyID = try providers.a.mint(providers.a.claims(), key: bKey, header: ["alg": "RS256"])
            #expect(await authenticate(issuers, noKeyID).rejection == .invalidSignature)
            // C's EC key cannot vouch for A either.
            let ecForA = try providers.a.mint(providers.a.claims(), key: providers.c.keys[0])
            #expect(await authenticate(issuers, ecForA).rejection == .unknownKey)
        }
        await providers.stop()
    }

    @Test("a token for B carrying A's audience and claims but B's iss needs B's key")
    func issuerDecidesKeys() async throws {
        let providers = try await Providers()
        try await withIssuers(providers) { issuers in
            let claimingB = try providers.a.mint(providers.b.claims(), key: providers.a.keys[0])
            #expect(await authenticate(issuers, claimingB).rejection == .unknownKey)
        }
        await providers.stop()
    }

    @Test("iss must match byte for byte: a trailing slash, another case or scheme is no issuer")
    func exactIssuerMatch() async throws {
        let providers = try await Providers()
        try await withIssuers(providers) { issuers in
            let before = providers.all.map(\.jwksFetches)
            for variant in [
                providers.a.url + "/", providers.a.url.uppercased(), "http" + String(providers.a.url.dropFirst(5)),
            ] {
                let token = try providers.a.mint(providers.a.claims().setting("iss", .string(variant)))
                guard case .rejected(.unknownIssuer, nil) = issuers.authenticate(token: token) else {
                    Issue.record("\(variant) was not refused as an unknown issuer")
                    continue
                }
            }
            #expect(providers.all.map(\.jwksFetches) == before)
        }
        await providers.stop()
    }

    @Test("a token for no configured issuer is refused at once, with no key work at any issuer")
    func unknownIssuer() async throws {
        let providers = try await Providers()
        try await withIssuers(providers, tokenCacheTTL: .seconds(10)) { issuers in
            let before = providers.all.map(\.jwksFetches)
            let stranger = try await StandInIssuer(keys: [try .rsa(kid: "a-key", slot: 0)])
            for _ in 0..<50 {
                guard case .rejected(.unknownIssuer, issuer: nil) = issuers.authenticate(token: try stranger.mint())
                else {
                    Issue.record("a token from an unconfigured issuer was not refused immediately")
                    break
                }
            }
            #expect(providers.all.map(\.jwksFetches) == before)
            #expect(issuers.tokenCache?.count == 0)
            await stranger.stop()
        }
        await providers.stop()
    }

    @Test("one issuer down does not affect the others")
    func oneIssuerDown() async throws {
        let providers = try await Providers()
        try await withIssuers(providers) { issuers in
            providers.b.setAvailable(false)
            let unknownKid = try providers.b.mint(key: try .rsa(kid: "rotated", slot: 2))
            #expect(await authenticate(issuers, unknownKid).rejection == .unknownKey)
            #expect(try await authenticate(issuers, providers.a.mint()).identity?.issuerName == "idp-a")
            #expect(try await authenticate(issuers, providers.b.mint()).identity?.issuerName == "idp-b")
            #expect(try await authenticate(issuers, providers.c.mint()).identity?.issuerName == "idp-c")
        }
        await providers.stop()
    }

    @Test("accounts.google.com: the scheme-less iss routes to the https://accounts.google.com issuer")
    func googleRouting() async throws {
        let configuration = ProxyConfiguration(issuers: [
            IssuerConfiguration(url: "https://accounts.google.com", audiences: ["k"]),
            IssuerConfiguration(url: "https://idp.example.com", audiences: ["k"]),
        ])
        let issuers = try IssuerSet(configuration: configuration, logger: Logger(label: "test"))
        let key = try TestSigningKey.rsa(kid: "g")
        let exp = TestJSON.int(Int(IssuerSet.currentTime()) + 3600)
        for iss in ["accounts.google.com", "https://accounts.google.com"] {
            let token = try TokenMinter.mint(claims: ["iss": .string(iss), "aud": "k", "exp": exp], key: key)
            // Routed to the google issuer, whose keys were never fetched here.
            guard case .rejected(.keysUnavailable, issuer: "accounts-google-com") = issuers.authenticate(token: token)
            else {
                Issue.record("\(iss) was not routed to the google issuer: \(issuers.authenticate(token: token))")
                continue
            }
        }
        let other = try TokenMinter.mint(claims: ["iss": "idp.example.com", "aud": "k", "exp": exp], key: key)
        #expect(issuers.authenticate(token: other).rejection == .unknownIssuer)
        await issuers.shutdown()
    }
}

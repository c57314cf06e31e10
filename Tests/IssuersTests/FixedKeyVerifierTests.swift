import Config
import Issuers
import Testbed
import Testing

/// `FixedKeyVerifier`, the offline entry point the fuzz targets judge tokens with, gives the
/// verdicts `IssuerSet` gives for the same keys.
@Suite("Verifying tokens against keys given up front")
struct FixedKeyVerifierTests {
    static let now = 1_800_000_000

    let alpha: TestSigningKey
    let beta: TestSigningKey
    let verifier: FixedKeyVerifier

    init() throws {
        alpha = try TestSigningKey.rsa(kid: "alpha")
        beta = TestSigningKey.p256(kid: "beta")
        let configuration = ProxyConfiguration(issuers: [
            IssuerConfiguration(url: "https://a.example.com", audiences: ["kubernetes"]),
            IssuerConfiguration(
                url: "https://b.example.com", audiences: ["kubernetes"],
                claimMappings: ClaimMappings(usernameClaim: "sub", usernamePrefix: "b:")),
        ])
        func jwks(_ key: TestSigningKey) -> [UInt8] {
            Array(TestJSON.object([("keys", .array([key.publicJWK]))]).serialized.utf8)
        }
        verifier = try #require(
            FixedKeyVerifier(
                configuration: configuration,
                jwks: ["https://a.example.com": jwks(alpha), "https://b.example.com": jwks(beta)]))
    }

    private func claims(issuer: String) -> TestJSON {
        [
            "iss": .string(issuer), "aud": "kubernetes", "sub": "bob", "email": "alice@example.com",
            "exp": .int(Self.now + 60),
        ]
    }

    private func judge(_ token: String) -> Result<Identity, TokenRejection> {
        verifier.authenticate(token: token, now: Double(Self.now))
    }

    @Test("each token is verified by its own issuer's keys and mapping")
    func routesByIssuer() throws {
        let first = try TokenMinter.mint(claims: claims(issuer: "https://a.example.com"), key: alpha)
        let second = try TokenMinter.mint(claims: claims(issuer: "https://b.example.com"), key: beta)
        guard case .success(let alice) = judge(first), case .success(let bob) = judge(second) else {
            Issue.record("a valid token was refused")
            return
        }
        #expect(alice.username == "alice@example.com")
        #expect(bob.username == "b:bob")
    }

    @Test("another issuer's key, an unknown issuer, an expired token and garbage are refused")
    func refusals() throws {
        let crossed = try TokenMinter.mint(claims: claims(issuer: "https://a.example.com"), key: beta)
        #expect(throws: TokenRejection.unknownKey) { try judge(crossed).get() }
        let stranger = try TokenMinter.mint(claims: claims(issuer: "https://c.example.com"), key: alpha)
        #expect(throws: TokenRejection.unknownIssuer) { try judge(stranger).get() }
        let expired = try TokenMinter.mint(
            claims: claims(issuer: "https://a.example.com").setting("exp", .int(Self.now - 1)), key: alpha)
        #expect(throws: TokenRejection.expired) { try judge(expired).get() }
        #expect(throws: TokenRejection.self) { try judge("not.a.token").get() }
    }

    @Test("an issuer with no JWKS, or one with no usable key, gives no verifier")
    func unusableKeys() {
        let configuration = ProxyConfiguration(issuers: [
            IssuerConfiguration(url: "https://a.example.com", audiences: ["kubernetes"])
        ])
        #expect(FixedKeyVerifier(configuration: configuration, jwks: [:]) == nil)
        let hmacOnly = Array(#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#.utf8)
        #expect(FixedKeyVerifier(configuration: configuration, jwks: ["https://a.example.com": hmacOnly]) == nil)
    }
}

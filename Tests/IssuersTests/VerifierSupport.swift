import Config
import Foundation
import Testbed

@testable import Issuers

/// A verifier for one issuer with fixed keys and a fixed clock, for checking token semantics
/// without a network.
struct VerifierFixture {
    static let issuerURL = "https://issuer.example.com"
    static let now = 1_800_000_000

    let keys: [TestSigningKey]
    let verifier: TokenVerifier
    let keySet: KeySet

    init(
        keys: [TestSigningKey]? = nil, configure: (inout IssuerConfiguration) -> Void = { _ in },
        allowReservedIdentities: Bool = false
    ) throws {
        let keys = try keys ?? [TestSigningKey.rsa(kid: "rsa-1")]
        var configuration = IssuerConfiguration(url: Self.issuerURL, audiences: ["kubernetes"])
        configure(&configuration)
        self.keys = keys
        self.verifier = TokenVerifier(configuration: configuration, allowReservedIdentities: allowReservedIdentities)
        let jwks: TestJSON = ["keys": .array(keys.map(\.publicJWK))]
        self.keySet = try KeySet.parse(jwks: Array(jwks.serialized.utf8)).0
    }

    /// Claims of a valid token at `now`.
    static var claims: TestJSON {
        [
            "iss": .string(issuerURL), "aud": "kubernetes", "sub": "user-1", "email": "alice@example.com",
            "email_verified": true, "groups": ["dev"], "iat": .int(now - 60), "exp": .int(now + 3600),
        ]
    }

    func mint(_ claims: TestJSON = VerifierFixture.claims, key: TestSigningKey? = nil, header: TestJSON? = nil) throws
        -> String
    {
        try TokenMinter.mint(claims: claims, key: key ?? keys[0], header: header)
    }

    /// The verifier's verdict on `token` at `now` (plus `offset` seconds).
    func verify(_ token: String, offset: Int = 0) -> Result<Identity, TokenRejection> {
        let parsed: CompactJWS
        do {
            parsed = try CompactJWS(parsing: token)
        } catch {
            return .failure(error)
        }
        switch verifier.verify(parsed, keys: keySet, now: Double(Self.now + offset)) {
        case .verified(let identity): return .success(identity)
        case .rejected(let rejection), .noKeyVerified(let rejection): return .failure(rejection)
        }
    }
}

extension Result where Success == Identity, Failure == TokenRejection {
    var rejection: TokenRejection? {
        if case .failure(let rejection) = self { return rejection }
        return nil
    }
    var identity: Identity? {
        if case .success(let identity) = self { return identity }
        return nil
    }
}

extension IssuerSet.Attempt {
    /// The rejection of a refused attempt (nil when authenticated or waiting for a refetch).
    var rejection: TokenRejection? {
        if case .rejected(let rejection, _) = self { return rejection }
        return nil
    }
    var identity: Identity? {
        if case .authenticated(let identity) = self { return identity }
        return nil
    }
}

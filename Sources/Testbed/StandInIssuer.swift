import FoundationEssentials
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1

/// An OIDC identity provider on loopback HTTPS: it serves a discovery document and a JWKS,
/// signs tokens, rotates keys, and can be made unavailable, counting every key fetch.
public final class StandInIssuer: Sendable {
    public let certificateAuthority: TestCertificateAuthority
    private let server: TestHTTPServer
    private struct State {
        var keys: [TestSigningKey]
        var available = true
        var discoveryIssuer: String?
        var jwksFetches = 0
        var discoveryFetches = 0
    }
    private let state: NIOLockedValueBox<State>

    /// The issuer URL: `https://127.0.0.1:<port>` (plus `path`, if one was given), or `host`
    /// in place of `127.0.0.1`.
    public let url: String

    /// Starts an IdP with `keys` (default: one RSA key `rsa-1`), trusted through `certificateAuthority`.
    /// With `host`, its URL and certificate name that host (which only a proxy that sends every
    /// host to loopback, `TestConnectProxy`, can reach).
    public init(
        keys: [TestSigningKey]? = nil, path: String = "", certificateAuthority: TestCertificateAuthority? = nil,
        host: String = "127.0.0.1"
    ) async throws {
        let authority = try certificateAuthority ?? TestCertificateAuthority(commonName: "stand-in issuer CA")
        self.certificateAuthority = authority
        let state = NIOLockedValueBox(State(keys: try keys ?? [TestSigningKey.rsa(kid: "rsa-1")]))
        self.state = state
        let identity = try authority.issueServerCertificate(dnsNames: ["localhost", host])
        let urlBox = NIOLockedValueBox("")
        self.server = try await TestHTTPServer.start(tls: try identity.serverTLSConfiguration()) { request, writer in
            let issuerURL = urlBox.withLockedValue { $0 }
            StandInIssuer.handle(request, writer, state: state, issuerURL: issuerURL, path: path)
        }
        self.url = "https://\(host):\(server.port)\(path)"
        urlBox.withLockedValue { $0 = self.url }
    }

    private static func handle(
        _ request: ReceivedRequest, _ writer: ResponseWriter, state: NIOLockedValueBox<State>, issuerURL: String,
        path: String
    ) {
        let (available, keys, discoveryIssuer) = state.withLockedValue { (s: inout State) in
            (s.available, s.keys, s.discoveryIssuer)
        }
        guard available else {
            writer.respond(.serviceUnavailable, contentType: "text/plain", "identity provider is down")
            return
        }
        switch request.path {
        case Substring(path + "/.well-known/openid-configuration"):
            state.withLockedValue { $0.discoveryFetches += 1 }
            let document: TestJSON = [
                "issuer": .string(discoveryIssuer ?? issuerURL),
                "jwks_uri": .string(issuerURL + "/keys"),
                "id_token_signing_alg_values_supported": ["RS256", "ES256"],
            ]
            writer.respond(.ok, document.serialized)
        case Substring(path + "/keys"):
            state.withLockedValue { $0.jwksFetches += 1 }
            let jwks: TestJSON = ["keys": .array(keys.map(\.publicJWK))]
            writer.respond(.ok, jwks.serialized)
        default:
            writer.respond(.notFound, contentType: "text/plain", "not found")
        }
    }

    /// The signing keys currently published.
    public var keys: [TestSigningKey] { state.withLockedValue { $0.keys } }

    /// Publishes `keys` instead of the current ones (a key rotation).
    public func publish(keys: [TestSigningKey]) {
        state.withLockedValue { $0.keys = keys }
    }

    /// Makes every request fail with 503 (false) or succeed again (true).
    public func setAvailable(_ available: Bool) {
        state.withLockedValue { $0.available = available }
    }

    /// Makes the discovery document claim another issuer (nil: the real URL).
    public func setDiscoveryIssuer(_ issuer: String?) {
        state.withLockedValue { $0.discoveryIssuer = issuer }
    }

    public var jwksFetches: Int { state.withLockedValue { $0.jwksFetches } }
    public var discoveryFetches: Int { state.withLockedValue { $0.discoveryFetches } }

    /// Standard claims for a token valid for an hour: `iss`, `aud`, `sub`, `email`, `email_verified`, `groups`, `iat`, `exp`.
    public func claims(
        audience: String = "kubernetes", email: String = "alice@example.com", groups: [String] = ["developers"],
        lifetime: Int = 3600
    ) -> TestJSON {
        let now = Int(Date().timeIntervalSince1970)
        return [
            "iss": .string(url), "aud": .string(audience), "sub": "user-1234",
            "email": .string(email), "email_verified": true,
            "groups": .array(groups.map { .string($0) }),
            "iat": .int(now), "exp": .int(now + lifetime),
        ]
    }

    /// A token signed by the first published key (or `key`), with `claims` (default: `claims()`).
    public func mint(_ claims: TestJSON? = nil, key: TestSigningKey? = nil, header: TestJSON? = nil) throws -> String {
        let signer = key ?? keys[0]
        return try TokenMinter.mint(claims: claims ?? self.claims(), key: signer, header: header)
    }

    public func stop() async {
        await server.stop()
    }
}

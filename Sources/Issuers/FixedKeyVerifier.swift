import Config

/// Judges tokens against signing keys given up front: the same parsing, `iss` routing and
/// checks as `IssuerSet.authenticate`, with no key fetching, no token cache and no network.
/// For the fuzz targets (`Fuzz/`) and tools that check tokens offline; the gateway uses
/// `IssuerSet`, whose keys come from each issuer's JWKS endpoint.
public struct FixedKeyVerifier: Sendable {
    private struct Entry: Sendable {
        var verifier: TokenVerifier
        var keys: KeySet
    }

    private let issuersByURL: [String: Entry]

    /// - Parameter jwks: each issuer's JWKS document, by issuer URL.
    /// - Returns: nil when an issuer of `configuration` has no JWKS here, or its JWKS does not
    ///   parse or holds no usable signing key.
    public init?(configuration: ProxyConfiguration, jwks: [String: [UInt8]]) {
        var byURL: [String: Entry] = [:]
        for issuer in configuration.issuers {
            guard let document = jwks[issuer.url], let keySet = try? KeySet.parse(jwks: document) else {
                return nil
            }
            let entry = Entry(
                verifier: TokenVerifier(
                    configuration: issuer, allowReservedIdentities: configuration.allowReservedIdentities),
                keys: keySet.0)
            for value in issuer.acceptedIssValues { byURL[value] = entry }
        }
        self.issuersByURL = byURL
    }

    /// The identity `token` asserts, or why it is refused, at time `now` (seconds since the epoch).
    public func authenticate(token: String, now: Double) -> Result<Identity, TokenRejection> {
        let entry: Entry
        let parsed: CompactJWS
        do {
            let (match, parts) = try CompactJWS.route(token, in: issuersByURL)
            entry = match
            parsed = try CompactJWS(parts)
        } catch {
            return .failure(error)
        }
        switch entry.verifier.verify(parsed, keys: entry.keys, now: now) {
        case .verified(let identity): return .success(identity)
        case .rejected(let rejection), .noKeyVerified(let rejection): return .failure(rejection)
        }
    }
}

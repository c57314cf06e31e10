import Config
import Crypto
import CryptoExtras
import FoundationEssentials
import Issuers

/// The two issuers every token-judging target trusts, with the fixed keys of `FixedKeys`, and
/// the checks an accepted or refused token must pass whatever the input was.
public enum FixedIssuers {
    /// Issuer A: default mappings (`email`, `groups`), one required claim; RSA and P-256 keys.
    /// Issuer B: `sub` with prefix `b:`, groups from `roles` with prefix `b:`, `uid`; a P-384 key.
    public static let configuration = ProxyConfiguration(
        issuers: [
            IssuerConfiguration(
                url: FixedKeys.issuerA, audiences: ["kubernetes"], name: "idp-a",
                claimValidationRules: [ClaimValidationRule(claim: "hd", requiredValue: "example.com")]),
            IssuerConfiguration(
                url: FixedKeys.issuerB, audiences: ["kubernetes", "other"], name: "idp-b",
                claimMappings: ClaimMappings(
                    usernameClaim: "sub", usernamePrefix: "b:", groupsClaim: "roles", groupsPrefix: "b:",
                    uidClaim: "uid")),
        ],
        tokenCacheTTL: .zero)

    public static let verifier: FixedKeyVerifier = {
        guard
            let verifier = FixedKeyVerifier(
                configuration: configuration,
                jwks: [FixedKeys.issuerA: Array(FixedKeys.jwksA.utf8), FixedKeys.issuerB: Array(FixedKeys.jwksB.utf8)])
        else { preconditionFailure("the fixed JWKS documents do not parse") }
        return verifier
    }()

    /// Judges `token` at the fixed time and checks the outcome's invariants.
    @discardableResult
    public static func judge(_ token: String) -> Result<Identity, TokenRejection> {
        let result = verifier.authenticate(token: token, now: FixedKeys.now)
        switch result {
        case .success(let identity): checkAccepted(identity, token: token)
        case .failure(let rejection): checkRefused(rejection, token: token)
        }
        return result
    }

    /// An accepted token was signed by one of the fixed keys, is not expired, and maps to a
    /// header-safe identity under the mapping of the issuer that vouched for it.
    static func checkAccepted(_ identity: Identity, token: String) {
        require(SignatureOracle.verifiesWithFixedKeys(token), "accepted a token no fixed key signed")
        require(identity.expiresAt >= FixedKeys.now, "accepted a token whose exp \(identity.expiresAt) is past")
        require(!identity.username.isEmpty, "accepted an empty username")
        let values = [identity.username] + identity.groups + (identity.uid.map { [$0] } ?? [])
        require(!values.contains(where: hasControlCharacter), "a mapped value holds a control character")
        // A header value loses leading and trailing white space on the way (RFC 9110 §5.5):
        // " admin" would reach the API server as "admin", another user.
        let spaced = values.contains { $0.utf8.first == 0x20 || $0.utf8.last == 0x20 }
        require(!spaced, "a mapped value has a surrounding space")
        require(!identity.username.hasPrefix("system:"), "mapped a reserved username")
        require(!identity.groups.contains { $0.hasPrefix("system:") }, "mapped a reserved group")
        switch identity.issuerName {
        case "idp-a":
            require(identity.uid == nil, "issuer A maps no uid")
        case "idp-b":
            require(identity.username.hasPrefix("b:"), "issuer B's username lacks its prefix")
            require(identity.groups.allSatisfy { $0.hasPrefix("b:") }, "issuer B's groups lack their prefix")
            require(identity.uid != nil, "issuer B maps a uid")
        default:
            require(false, "identity vouched for by unknown issuer \(identity.issuerName)")
        }
    }

    /// A refusal's description and reason (what the log and metrics carry) never hold the
    /// token's signature, so a logged refusal cannot replay the token.
    static func checkRefused(_ rejection: TokenRejection, token: String) {
        let reason = rejection.reason
        require(!reason.isEmpty && reason.utf8.count <= 32, "unbounded reason label \(reason)")
        if let signature = token.split(separator: ".", omittingEmptySubsequences: false).last,
            signature.utf8.count >= 16
        {
            require(!rejection.description.contains(signature), "a refusal's description holds the token's signature")
        }
    }
}

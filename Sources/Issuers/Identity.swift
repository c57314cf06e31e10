/// Who a verified token says its bearer is, after claim mapping and prefixes. Only the
/// verifier creates one: holding an `Identity` means a token passed every check.
public struct Identity: Sendable, Hashable {
    public let username: String
    public let groups: [String]
    public let uid: String?
    /// The `name` of the issuer that vouched for it (for logs and metrics).
    public let issuerName: String
    /// The token's `exp`, in seconds since the epoch; a cached identity never outlives it.
    public let expiresAt: Double

    init(username: String, groups: [String], uid: String?, issuerName: String, expiresAt: Double) {
        self.username = username
        self.groups = groups
        self.uid = uid
        self.issuerName = issuerName
        self.expiresAt = expiresAt
    }
}

/// Why a token was refused. The HTTP answer never says which (a 401 is a 401); logs and
/// metrics do, through `reason` (a short bounded label) and `description` (never the token).
public enum TokenRejection: Error, Sendable, Hashable, CustomStringConvertible {
    /// Not a compact JWS: wrong number of parts, bad base64url, header or payload not JSON.
    case malformed(String)
    /// The unverified `iss` names no configured issuer.
    case unknownIssuer
    /// The header's `alg` is not allowed (including `none` and HMAC).
    case algorithmNotAllowed(String)
    /// The header carries something kube-apiserver also refuses (`crit`, several signatures).
    case unsupportedHeader(String)
    /// The issuer's keys have never been fetched.
    case keysUnavailable
    /// No key of the issuer has the token's `kid` (after a refetch, where one was allowed).
    case unknownKey
    case invalidSignature
    case audienceMismatch
    case expired
    case notYetValid
    /// A claim has the wrong JSON type for its role.
    case invalidClaim(String)
    case claimRuleFailed(claim: String)
    case emailNotVerified
    case usernameClaimMissing(String)
    case uidClaimMissing(String)
    /// A mapped value carries a control character that could break a header.
    case controlCharacter(field: String)
    /// A mapped value starts or ends with a space, which a header value cannot carry.
    case surroundingSpace(field: String)
    /// A mapped username or group starts with `system:` and reserved identities are not allowed.
    case reservedIdentity(String)

    /// True when the right answer is 403 rather than 401.
    public var isForbidden: Bool {
        if case .reservedIdentity = self { return true }
        return false
    }

    /// A short, bounded label for metrics.
    public var reason: String {
        switch self {
        case .malformed: "malformed"
        case .unknownIssuer: "unknown_issuer"
        case .algorithmNotAllowed: "algorithm_not_allowed"
        case .unsupportedHeader: "unsupported_header"
        case .keysUnavailable: "keys_unavailable"
        case .unknownKey: "unknown_key"
        case .invalidSignature: "invalid_signature"
        case .audienceMismatch: "audience_mismatch"
        case .expired: "expired"
        case .notYetValid: "not_yet_valid"
        case .invalidClaim: "invalid_claim"
        case .claimRuleFailed: "claim_rule_failed"
        case .emailNotVerified: "email_not_verified"
        case .usernameClaimMissing: "username_missing"
        case .uidClaimMissing: "uid_missing"
        case .controlCharacter: "control_character"
        case .surroundingSpace: "surrounding_space"
        case .reservedIdentity: "reserved_identity"
        }
    }

    public var description: String {
        switch self {
        case .malformed(let why): "malformed token: \(why)"
        case .unknownIssuer: "token issuer is not configured"
        case .algorithmNotAllowed(let alg): "signing algorithm \(alg) is not allowed"
        case .unsupportedHeader(let why): "unsupported token header: \(why)"
        case .keysUnavailable: "the issuer's signing keys have not been fetched yet"
        case .unknownKey: "no signing key of the issuer matches the token's kid"
        case .invalidSignature: "signature does not verify"
        case .audienceMismatch: "audience does not match"
        case .expired: "token is expired"
        case .notYetValid: "token is not valid yet (nbf)"
        case .invalidClaim(let why): "invalid claim: \(why)"
        case .claimRuleFailed(let claim): "claim validation rule failed for claim \(claim)"
        case .emailNotVerified: "email not verified"
        case .usernameClaimMissing(let claim): "username claim \(claim) is missing or empty"
        case .uidClaimMissing(let claim): "uid claim \(claim) is missing"
        case .controlCharacter(let field): "\(field) contains a control character"
        case .surroundingSpace(let field): "\(field) starts or ends with a space"
        case .reservedIdentity(let value): "identity \(value) is reserved (system:)"
        }
    }
}

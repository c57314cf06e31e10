/// A JWS algorithm the proxy can verify. `none` and the HMAC family are not representable:
/// a token signed with them can never be accepted.
public enum SigningAlgorithm: String, Sendable, Hashable, CaseIterable, Comparable {
    case rs256 = "RS256"
    case rs384 = "RS384"
    case rs512 = "RS512"
    case es256 = "ES256"
    case es384 = "ES384"
    case es512 = "ES512"
    case ps256 = "PS256"
    case ps384 = "PS384"
    case ps512 = "PS512"

    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// A rule a token's claims must satisfy: the claim must be a string equal to `requiredValue`.
public struct ClaimValidationRule: Sendable, Hashable {
    public var claim: String
    public var requiredValue: String

    public init(claim: String, requiredValue: String) {
        self.claim = claim
        self.requiredValue = requiredValue
    }
}

/// How a token's claims become the impersonated identity.
public struct ClaimMappings: Sendable, Hashable {
    public var usernameClaim: String
    public var usernamePrefix: String
    /// nil: the token's groups are not mapped.
    public var groupsClaim: String?
    public var groupsPrefix: String
    /// nil: no `Impersonate-Uid`.
    public var uidClaim: String?

    public init(
        usernameClaim: String = "email",
        usernamePrefix: String = "",
        groupsClaim: String? = "groups",
        groupsPrefix: String = "",
        uidClaim: String? = nil
    ) {
        self.usernameClaim = usernameClaim
        self.usernamePrefix = usernamePrefix
        self.groupsClaim = groupsClaim
        self.groupsPrefix = groupsPrefix
        self.uidClaim = uidClaim
    }
}

/// One trusted OIDC issuer, validated: every value here passed kube-apiserver's rules.
public struct IssuerConfiguration: Sendable, Hashable {
    /// The issuer URL, compared byte for byte with a token's `iss`.
    public var url: String
    /// Where to fetch the discovery document instead of `<url>/.well-known/openid-configuration`.
    public var discoveryURL: String?
    /// A token is accepted when its `aud` contains any of these.
    public var audiences: [String]
    /// PEM bundle trusted for discovery and JWKS; nil means the system roots.
    public var certificateAuthorityPEM: String?
    /// Health-check name: `issuer-<name>` in `/readyz`.
    public var name: String
    public var claimValidationRules: [ClaimValidationRule]
    public var claimMappings: ClaimMappings
    public var signingAlgorithms: Set<SigningAlgorithm>

    public init(
        url: String,
        discoveryURL: String? = nil,
        audiences: [String],
        certificateAuthorityPEM: String? = nil,
        name: String? = nil,
        claimValidationRules: [ClaimValidationRule] = [],
        claimMappings: ClaimMappings = ClaimMappings(),
        signingAlgorithms: Set<SigningAlgorithm> = Set(SigningAlgorithm.allCases)
    ) {
        self.url = url
        self.discoveryURL = discoveryURL
        self.audiences = audiences
        self.certificateAuthorityPEM = certificateAuthorityPEM
        self.name = name ?? IssuerConfiguration.defaultName(forURL: url)
        self.claimValidationRules = claimValidationRules
        self.claimMappings = claimMappings
        self.signingAlgorithms = signingAlgorithms
    }

    /// Whether `other` needs the same discovery and keys: URL, discovery URL and CA unchanged.
    public func sharesKeySource(with other: IssuerConfiguration) -> Bool {
        url == other.url && discoveryURL == other.discoveryURL
            && certificateAuthorityPEM == other.certificateAuthorityPEM
    }

    /// A check name derived from the URL's host and path: lowercase letters, digits and `-`.
    public static func defaultName(forURL url: String) -> String {
        var rest = Substring(url)
        if let colon = rest.firstIndex(of: ":"), rest[colon...].hasPrefix("://") {
            rest = rest[rest.index(colon, offsetBy: 3)...]
        }
        var name = ""
        for scalar in rest.unicodeScalars {
            if ("0"..."9").contains(scalar) || ("a"..."z").contains(scalar) || ("A"..."Z").contains(scalar) {
                name.unicodeScalars.append(contentsOf: String(scalar).lowercased().unicodeScalars)
            } else if !name.isEmpty && !name.hasSuffix("-") {
                name.append("-")
            }
        }
        while name.hasSuffix("-") { name.removeLast() }
        return name.isEmpty ? "issuer" : name
    }
}

import Config

/// One issuer's checks, in kube-apiserver's order: the standard claims as go-oidc checks them,
/// then the signature, then kube-apiserver's own claim rules and mappings. Pure: the keys and
/// the time are inputs, so every check is testable without a network.
struct TokenVerifier: Sendable {
    /// go-oidc's leeway for `nbf`.
    static let notBeforeLeeway = 60.0

    let configuration: IssuerConfiguration
    let allowReservedIdentities: Bool
    private let acceptedIssuers: Set<String>
    private let audiences: Set<String>

    init(configuration: IssuerConfiguration, allowReservedIdentities: Bool) {
        self.configuration = configuration
        self.allowReservedIdentities = allowReservedIdentities
        self.acceptedIssuers = Set(configuration.acceptedIssValues)
        self.audiences = Set(configuration.audiences)
    }

    /// The outcome of checking a token against one set of keys.
    enum Outcome: Sendable {
        case verified(Identity)
        case rejected(TokenRejection)
        /// Everything but the signature passed, and no current key verified it: fresh keys might.
        case noKeyVerified(TokenRejection)
    }

    func verify(_ token: CompactJWS, keys: KeySet?, now: Double) -> Outcome {
        do {
            let expiresAt = try checkStandardClaims(token.claims, now: now)
            let (algorithm, keyID) = try checkHeader(token.header)
            guard let keys else { return .rejected(.keysUnavailable) }
            let candidates = keys.candidates(keyID: keyID).filter { $0.fits(algorithm) }
            guard
                candidates.contains(where: {
                    $0.isValidSignature(token.signature, over: token.signingInput, algorithm: algorithm)
                })
            else {
                return .noKeyVerified(candidates.isEmpty ? .unknownKey : .invalidSignature)
            }
            return .verified(try mapIdentity(token.claims, expiresAt: expiresAt))
        } catch {
            return .rejected(error)
        }
    }

    /// `iss`, `aud`, `exp` and `nbf`, typed and checked as go-oidc's `IDTokenVerifier.Verify` does:
    /// first every claim it decodes must have its Go type, then the checks in its order.
    private func checkStandardClaims(_ claims: [String: JSONValue], now: Double) throws(TokenRejection) -> Double {
        for name in ["iss", "sub", "nonce", "at_hash"] {
            if let value = claims[name], value.goString == nil { throw .invalidClaim("\(name) is not a string") }
        }
        // exp and iat are go-oidc `jsonTime` values: null does not unmarshal. nbf is a pointer: null is absent.
        func time(_ name: String, nullIsAbsent: Bool) throws(TokenRejection) -> Double? {
            guard let value = claims[name], !(nullIsAbsent && value == .null) else { return nil }
            guard let time = value.goUnixTime else { throw .invalidClaim("\(name) is not a number") }
            return time
        }
        let expiry = try time("exp", nullIsAbsent: false)
        _ = try time("iat", nullIsAbsent: false)
        let notBefore = try time("nbf", nullIsAbsent: true)
        let tokenAudiences: [String]
        switch claims["aud"] {
        case .string(let audience): tokenAudiences = [audience]
        case .array(let list):
            tokenAudiences = try list.map { (item) throws(TokenRejection) -> String in
                guard let text = item.goString else { throw .invalidClaim("aud is not a string or a list of strings") }
                return text
            }
        // go-oidc reads null as the one audience "", which no configuration lists.
        case .null, nil: tokenAudiences = []
        default: throw .invalidClaim("aud is not a string or a list of strings")
        }
        try DistributedClaims.checkShape(claims)

        guard acceptedIssuers.contains(claims["iss"]?.goString ?? "") else { throw .unknownIssuer }
        guard tokenAudiences.contains(where: audiences.contains) else { throw .audienceMismatch }
        // A missing exp is go-oidc's zero time, which is always in the past.
        guard let expiresAt = expiry, now <= expiresAt else { throw .expired }
        if let notBefore, now < notBefore - Self.notBeforeLeeway { throw .notYetValid }
        return expiresAt
    }

    /// `alg` (allowed for this issuer), `kid`, and the header fields go-jose refuses.
    private func checkHeader(_ header: [String: JSONValue]) throws(TokenRejection) -> (SigningAlgorithm, String?) {
        guard case .string(let name) = header["alg"] else { throw .malformed("header has no alg") }
        guard let algorithm = SigningAlgorithm(rawValue: name), configuration.signingAlgorithms.contains(algorithm)
        else {
            throw .algorithmNotAllowed(String(name.prefix(16)))
        }
        if header["crit"] != nil { throw .unsupportedHeader("crit") }
        if header["b64"] != nil { throw .unsupportedHeader("b64") }
        switch header["kid"] {
        case nil, .null: return (algorithm, nil)
        // go-oidc tries every key for an empty kid, as for none.
        case .string(let keyID): return (algorithm, keyID.isEmpty ? nil : keyID)
        default: throw .malformed("header kid is not a string")
        }
    }

    /// kube-apiserver's mappings and then its claim rules, in its order; then the proxy's
    /// header-safety and reserved-name rules.
    private func mapIdentity(_ claims: [String: JSONValue], expiresAt: Double) throws(TokenRejection) -> Identity {
        let mappings = configuration.claimMappings
        guard let usernameValue = claims[mappings.usernameClaim] else {
            throw .usernameClaimMissing(mappings.usernameClaim)
        }
        guard let rawUsername = usernameValue.goString else {
            throw .invalidClaim("username claim \(mappings.usernameClaim) is not a string")
        }
        if mappings.usernameClaim == "email", let verified = claims["email_verified"] {
            switch verified {
            case .bool(true): break
            case .bool(false), .null: throw .emailNotVerified
            default: throw .invalidClaim("email_verified is not a boolean")
            }
        }
        guard !rawUsername.isEmpty else { throw .usernameClaimMissing(mappings.usernameClaim) }
        let username = mappings.usernamePrefix + rawUsername

        var groups: [String] = []
        if let groupsClaim = mappings.groupsClaim, claims[groupsClaim] == nil {
            try DistributedClaims.refuseDistributed(groupsClaim, in: claims)
        }
        if let groupsClaim = mappings.groupsClaim, let value = claims[groupsClaim] {
            switch value {
            case .null: break
            case .string(let group): groups = [mappings.groupsPrefix + group]
            case .array(let list):
                groups = try list.map { (item) throws(TokenRejection) -> String in
                    guard let group = item.goString else {
                        throw .invalidClaim("groups claim \(groupsClaim) is not a string or a list of strings")
                    }
                    return mappings.groupsPrefix + group
                }
            default:
                throw .invalidClaim("groups claim \(groupsClaim) is not a string or a list of strings")
            }
        }

        var uid: String?
        if let uidClaim = mappings.uidClaim {
            guard let value = claims[uidClaim] else { throw .uidClaimMissing(uidClaim) }
            guard let text = value.goString else { throw .invalidClaim("uid claim \(uidClaim) is not a string") }
            uid = text
        }

        // kube-apiserver checks the required claims after mapping the identity.
        for rule in configuration.claimValidationRules {
            guard let value = claims[rule.claim] else { throw .claimRuleFailed(claim: rule.claim) }
            guard let text = value.goString, text == rule.requiredValue else {
                throw .claimRuleFailed(claim: rule.claim)
            }
        }

        if Self.hasControlCharacter(username) { throw .controlCharacter(field: "username") }
        if groups.contains(where: Self.hasControlCharacter) { throw .controlCharacter(field: "groups") }
        if let uid, Self.hasControlCharacter(uid) { throw .controlCharacter(field: "uid") }
        if Self.hasSurroundingSpace(username) { throw .surroundingSpace(field: "username") }
        if groups.contains(where: Self.hasSurroundingSpace) { throw .surroundingSpace(field: "groups") }
        if let uid, Self.hasSurroundingSpace(uid) { throw .surroundingSpace(field: "uid") }
        if !allowReservedIdentities {
            if username.hasPrefix("system:") { throw .reservedIdentity(username) }
            if let group = groups.first(where: { $0.hasPrefix("system:") }) { throw .reservedIdentity(group) }
        }
        return Identity(
            username: username, groups: groups, uid: uid, issuerName: configuration.name, expiresAt: expiresAt)
    }

    /// A leading or trailing space: a header value loses it on the way (RFC 9110 §5.5, and Go's
    /// net/http trims it), so " admin" would reach the API server as "admin", another user.
    static func hasSurroundingSpace(_ text: String) -> Bool {
        text.utf8.first == UInt8(ascii: " ") || text.utf8.last == UInt8(ascii: " ")
    }

    /// C0 controls, DEL and the C1 range: none may reach a header value.
    static func hasControlCharacter(_ text: String) -> Bool {
        text.unicodeScalars.contains { $0.value < 0x20 || (0x7F...0x9F).contains($0.value) }
    }
}

extension IssuerConfiguration {
    /// The `iss` values a token of this issuer may carry: its URL, and for Google also the
    /// scheme-less `accounts.google.com`, which go-oidc accepts for it.
    var acceptedIssValues: [String] {
        url == "https://accounts.google.com" ? [url, "accounts.google.com"] : [url]
    }
}

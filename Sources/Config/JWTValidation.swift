/// kube-apiserver's validation of one `jwt[]` entry (validation.go's validateJWTAuthenticator),
/// plus the proxy's own defaults and the fields it does not implement yet.
enum JWTValidation {
    /// What the proxy says about a CEL field: recognised, refused, never silently ignored.
    static let celNotSupported =
        "CEL expressions are not supported yet; use claim (and prefix), or remove this field"

    static func validate(_ entry: JWTDocument, problems: inout ProblemCollector) -> IssuerConfiguration? {
        let before = problems.problems.count
        let url = validateURL(entry, problems: &problems)
        let discoveryURL = validateDiscoveryURL(entry, url: url, problems: &problems)
        let audiences = validateAudiences(entry, problems: &problems)
        var certificateAuthority: String?
        if let pem = entry.certificateAuthority, !pem.value.isEmpty {
            problems.collect { () throws(ConfigurationError) in
                try IssuerValidation.validateCertificatePEM(pem.value, path: pem.origin)
            }
            certificateAuthority = pem.value
        }
        if let egress = entry.egressSelectorType, !egress.value.isEmpty {
            problems.add(
                egress.origin,
                "\"\(egress.value)\": egress selection is a kube-apiserver feature the proxy does not have; "
                    + "remove this field (the proxy connects to the issuer directly)")
        }
        if let name = entry.name {
            validateName(name, problems: &problems)
        }
        let rules = validateClaimRules(entry, problems: &problems)
        let mappings = validateMappings(entry, problems: &problems)
        if let path = entry.userValidationRules {
            problems.add(
                path,
                "not supported yet (its rules are CEL expressions); remove it. The proxy refuses system: "
                    + "usernames and groups itself unless allowReservedIdentities is true")
        }
        guard problems.problems.count == before, let url, let mappings else { return nil }
        return IssuerConfiguration(
            url: url, discoveryURL: discoveryURL, audiences: audiences, certificateAuthorityPEM: certificateAuthority,
            name: entry.name?.value, claimValidationRules: rules, claimMappings: mappings,
            signingAlgorithms: entry.signingAlgorithms ?? Set(SigningAlgorithm.allCases))
    }

    private static func validateURL(_ entry: JWTDocument, problems: inout ProblemCollector) -> String? {
        guard let url = entry.url, !url.value.isEmpty else {
            problems.add(
                entry.url?.origin ?? entry.child("issuer.url"),
                "is required: the issuer's https URL, equal to its tokens' iss")
            return nil
        }
        do {
            try IssuerValidation.validateIssuerURL(url.value, path: url.origin)
            return url.value
        } catch {
            problems.add(contentsOf: error)
            return nil
        }
    }

    private static func validateDiscoveryURL(
        _ entry: JWTDocument, url: String?, problems: inout ProblemCollector
    ) -> String? {
        guard let discoveryURL = entry.discoveryURL, !discoveryURL.value.isEmpty else { return nil }
        if let url, trimmingTrailingSlashes(url) == trimmingTrailingSlashes(discoveryURL.value) {
            problems.add(discoveryURL.origin, "\"\(discoveryURL.value)\": discoveryURL must be different from URL")
        }
        problems.collect { () throws(ConfigurationError) in
            try IssuerValidation.validateIssuerURL(discoveryURL.value, path: discoveryURL.origin)
        }
        return discoveryURL.value
    }

    private static func validateAudiences(_ entry: JWTDocument, problems: inout ProblemCollector) -> [String] {
        guard let audiences = entry.audiences, !audiences.value.isEmpty else {
            problems.add(
                entry.audiences?.origin ?? entry.child("issuer.audiences"),
                "at least one audience is required: the client ID the issuer's tokens carry in aud")
            return []
        }
        var seen: Set<String> = []
        for (index, audience) in audiences.value.enumerated() {
            let path = audiences.isFlag ? audiences.origin : "\(audiences.origin)[\(index)]"
            if audience.isEmpty { problems.add(path, "audience can't be empty") }
            if !seen.insert(audience).inserted { problems.add(path, "duplicate audience \"\(audience)\"") }
        }
        let policy = entry.audienceMatchPolicy
        let policyPath = policy?.origin ?? entry.child("issuer.audienceMatchPolicy")
        if audiences.value.count > 1 && policy?.value != "MatchAny" {
            problems.add(
                policyPath,
                (policy.map { "\"\($0.value)\": " } ?? "")
                    + "audienceMatchPolicy must be MatchAny for multiple audiences")
        } else if let policy, !policy.value.isEmpty, policy.value != "MatchAny" {
            problems.add(
                policyPath, "\"\(policy.value)\": audienceMatchPolicy must be empty or MatchAny for single audience")
        }
        return audiences.value
    }

    /// A `/readyz` check name: lowercase letters, digits and `-`, starting and ending alphanumeric.
    private static func validateName(_ name: Sourced<String>, problems: inout ProblemCollector) {
        let scalars = Array(name.value.unicodeScalars)
        let allowed = scalars.allSatisfy { ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "-" }
        guard !scalars.isEmpty, scalars.count <= 63, allowed, scalars.first != "-", scalars.last != "-" else {
            problems.add(
                name.origin,
                "\"\(name.value)\" is not a valid name: use at most 63 lowercase letters, digits and '-', "
                    + "starting and ending with a letter or digit (it names the /readyz check issuer-<name>)")
            return
        }
    }

    private static func validateClaimRules(
        _ entry: JWTDocument, problems: inout ProblemCollector
    ) -> [ClaimValidationRule] {
        var rules: [ClaimValidationRule] = []
        var seenClaims: Set<String> = []
        for rule in entry.claimValidationRules?.value ?? [] {
            let claim = rule.claim.flatMap { $0.value.isEmpty ? nil : $0 }
            let expression = rule.expression.flatMap { $0.value.isEmpty ? nil : $0 }
            switch (claim, expression) {
            case (.some, .some):
                problems.add(rule.path, "claim and expression can't both be set")
            case (nil, nil):
                problems.add(rule.path, "claim or expression is required")
            case (let claim?, nil):
                if let message = rule.message, !message.value.isEmpty {
                    problems.add(message.origin, "message can't be set when claim is set")
                }
                if !seenClaims.insert(claim.value).inserted {
                    problems.add(claim.origin, "duplicate claim \"\(claim.value)\": each claim may have one rule")
                }
                rules.append(ClaimValidationRule(claim: claim.value, requiredValue: rule.requiredValue?.value ?? ""))
            case (nil, let expression?):
                if let value = rule.requiredValue, !value.value.isEmpty {
                    problems.add(value.origin, "requiredValue can't be set when expression is set")
                }
                problems.add(expression.origin, celNotSupported)
            }
        }
        return rules
    }

    private static func validateMappings(_ entry: JWTDocument, problems: inout ProblemCollector) -> ClaimMappings? {
        let mappingsPath = entry.child("claimMappings")
        let username = validatePrefixed(
            entry.username, path: mappingsPath + ".username", required: true,
            defaultClaim: entry.kubeAPIServerRules ? nil : "email", kubeAPIServerRules: entry.kubeAPIServerRules,
            problems: &problems)
        let groups = validatePrefixed(
            entry.groups, path: mappingsPath + ".groups", required: false,
            defaultClaim: entry.kubeAPIServerRules ? nil : "groups", kubeAPIServerRules: entry.kubeAPIServerRules,
            problems: &problems)

        var uidClaim: String?
        let uid = entry.uid
        let uidClaimValue = uid.claim.flatMap { $0.value.isEmpty ? nil : $0 }
        let uidExpression = uid.expression.flatMap { $0.value.isEmpty ? nil : $0 }
        if uidClaimValue != nil && uidExpression != nil {
            problems.add(mappingsPath + ".uid", "claim and expression can't both be set")
        } else if let expression = uidExpression {
            problems.add(expression.origin, celNotSupported)
        } else {
            uidClaim = uidClaimValue?.value
        }
        if let path = entry.extra {
            problems.add(path, "not supported yet (its values are CEL expressions); remove it")
        }
        guard let username, let groups else { return nil }
        return ClaimMappings(
            usernameClaim: username.claim ?? "", usernamePrefix: username.prefix, groupsClaim: groups.claim,
            groupsPrefix: groups.prefix, uidClaim: uidClaim)
    }

    /// `username` or `groups`: claim xor expression, and kube-apiserver's prefix rules. Returns
    /// nil when invalid; a nil claim means "not mapped" (groups only).
    private static func validatePrefixed(
        _ mapping: MappingDocument, path: String, required: Bool, defaultClaim: String?, kubeAPIServerRules: Bool,
        problems: inout ProblemCollector
    ) -> (claim: String?, prefix: String)? {
        let expression = mapping.expression.flatMap { $0.value.isEmpty ? nil : $0 }
        if let claim = mapping.claim, !claim.value.isEmpty, expression != nil {
            problems.add(path, "claim and expression can't both be set")
            return nil
        }
        if let expression {
            if let prefix = mapping.prefix {
                problems.add(prefix.origin, "prefix can't be set when expression is set")
            }
            problems.add(expression.origin, celNotSupported)
            return nil
        }
        guard let claim = mapping.claim else {
            if let defaultClaim { return (defaultClaim, mapping.prefix?.value ?? "") }
            if required {
                problems.add(path, "claim or expression is required: the claim that holds the username")
                return nil
            }
            return (nil, "")
        }
        if claim.value.isEmpty {
            if required {
                problems.add(claim.origin, "must not be empty: name the claim that holds the username")
                return nil
            }
            return (nil, "")
        }
        if kubeAPIServerRules && mapping.prefix == nil && !claim.isFlag {
            problems.add(
                path + ".prefix",
                "is required when claim is set (kube-apiserver's rule for an AuthenticationConfiguration); "
                    + "set it to \"\" to disable prefixing")
            return nil
        }
        return (claim.value, mapping.prefix?.value ?? "")
    }

    static func trimmingTrailingSlashes(_ url: String) -> Substring {
        var trimmed = Substring(url)
        while trimmed.hasSuffix("/") { trimmed = trimmed.dropLast() }
        return trimmed
    }
}

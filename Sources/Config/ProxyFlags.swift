/// The command-line flags that shape the configuration, as given: nil means "not on the
/// command line", which the overlay rules of SPEC §1 need to tell apart from a default.
public struct ProxyFlags: Sendable, Hashable {
    /// `--config`: the YAML file (SPEC §2); nil is the seed's flags-only mode.
    public var configFile: String?
    public var issuerURL: String?
    public var clientID: String?
    public var usernameClaim: String?
    public var groupsClaim: String?
    public var usernamePrefix: String?
    public var groupsPrefix: String?
    public var caFile: String?
    /// `claim=value` pairs.
    public var requiredClaims: [String] = []
    /// Comma-separated algorithm names.
    public var signingAlgorithms: String?
    public var listenAddress: String?
    public var metricsAddress: String?
    public var kubeconfig: String?
    public var tlsCertFile: String?
    public var tlsPrivateKeyFile: String?

    public init() {}

    /// The issuer-scoped flags that were given, by name: they describe the issuer that
    /// `--oidc-issuer-url` names and mean nothing without it when a file lists the issuers.
    var issuerScopedFlagsGiven: [String] {
        var given: [String] = []
        if clientID != nil { given.append("--oidc-client-id") }
        if usernamePrefix != nil { given.append("--oidc-username-prefix") }
        if groupsPrefix != nil { given.append("--oidc-groups-prefix") }
        if caFile != nil { given.append("--oidc-ca-file") }
        if !requiredClaims.isEmpty { given.append("--oidc-required-claim") }
        if signingAlgorithms != nil { given.append("--oidc-signing-algs") }
        return given
    }
}

/// The flags that describe one issuer, read and checked; shared by the flags-only mode and the
/// overlay onto a file. Every problem names its flag.
enum IssuerFlags {
    /// The `--oidc-ca-file` bundle, read and checked to hold a PEM certificate.
    static func certificateAuthority(_ flags: ProxyFlags, problems: inout ProblemCollector) -> String? {
        guard let caFile = flags.caFile, !caFile.isEmpty else { return nil }
        return problems.collect { () throws(ConfigurationError) in
            let pem = try readTextFile(caFile, path: "--oidc-ca-file")
            try IssuerValidation.validateCertificatePEM(pem, path: "--oidc-ca-file", file: caFile)
            return pem
        }
    }

    /// The `--oidc-required-claim CLAIM=VALUE` rules; each claim at most once.
    static func claimValidationRules(_ flags: ProxyFlags, problems: inout ProblemCollector) -> [ClaimValidationRule] {
        var rules: [ClaimValidationRule] = []
        for pair in flags.requiredClaims {
            guard let equals = pair.firstIndex(of: "="), equals != pair.startIndex else {
                problems.add("--oidc-required-claim", "\"\(pair)\" is not CLAIM=VALUE")
                continue
            }
            let claim = String(pair[..<equals])
            if rules.contains(where: { $0.claim == claim }) {
                problems.add("--oidc-required-claim", "claim \"\(claim)\" is given more than once")
                continue
            }
            rules.append(ClaimValidationRule(claim: claim, requiredValue: String(pair[pair.index(after: equals)...])))
        }
        return rules
    }

    /// The `--oidc-signing-algs` list; nil when the flag is not given (every supported algorithm).
    static func signingAlgorithms(_ flags: ProxyFlags, problems: inout ProblemCollector) -> Set<SigningAlgorithm>? {
        guard let list = flags.signingAlgorithms else { return nil }
        var algorithms: Set<SigningAlgorithm> = []
        for name in list.split(separator: ",", omittingEmptySubsequences: false) {
            let trimmed = String(name.filter { !$0.isWhitespace })
            if let algorithm = SigningAlgorithm(rawValue: trimmed) {
                algorithms.insert(algorithm)
            } else {
                problems.add(
                    "--oidc-signing-algs",
                    "\"\(trimmed)\" is not supported; choose from "
                        + SigningAlgorithm.allCases.sorted().map(\.rawValue).joined(separator: ", "))
            }
        }
        return algorithms
    }

    /// The issuer the flags alone describe (the seed's mode, or a flag issuer added to a file's).
    static func issuer(url: String, _ flags: ProxyFlags) throws(ConfigurationError) -> IssuerConfiguration {
        var problems = ProblemCollector()
        problems.collect { () throws(ConfigurationError) in
            try IssuerValidation.validateIssuerURL(url, path: "--oidc-issuer-url")
        }

        var audiences: [String] = []
        if let clientID = flags.clientID, !clientID.isEmpty {
            audiences = [clientID]
        } else {
            problems.add("--oidc-client-id", "is required: the audience (client ID) the issuer's tokens carry")
        }
        let caPEM = certificateAuthority(flags, problems: &problems)
        let rules = claimValidationRules(flags, problems: &problems)
        let algorithms = signingAlgorithms(flags, problems: &problems) ?? Set(SigningAlgorithm.allCases)

        var mappings = ClaimMappings()
        if let claim = flags.usernameClaim {
            if claim.isEmpty { problems.add("--oidc-username-claim", "must not be empty") }
            mappings.usernameClaim = claim
        }
        if let claim = flags.groupsClaim { mappings.groupsClaim = claim.isEmpty ? nil : claim }
        if let prefix = flags.usernamePrefix { mappings.usernamePrefix = prefix }
        if let prefix = flags.groupsPrefix { mappings.groupsPrefix = prefix }

        try problems.throwIfAny()
        return IssuerConfiguration(
            url: url, audiences: audiences, certificateAuthorityPEM: caPEM,
            claimValidationRules: rules, claimMappings: mappings, signingAlgorithms: algorithms)
    }
}

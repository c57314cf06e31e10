import FoundationEssentials

/// The command-line flags that shape the configuration, as given: nil means "not on the
/// command line", which the overlay rules of SPEC §1 need to tell apart from a default.
public struct ProxyFlags: Sendable, Hashable {
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
}

/// Builds the effective configuration from flags, reporting every problem at once.
public enum ConfigurationLoader {
    public static func load(flags: ProxyFlags) throws(ConfigurationError) -> ProxyConfiguration {
        var problems = ProblemCollector()
        var configuration = ProxyConfiguration(issuers: [])

        if let text = flags.listenAddress {
            if let address = problems.collect({ () throws(ConfigurationError) in
                try ListenAddress(parsing: text, path: "--listen-addr")
            }) {
                configuration.listenAddress = address
            }
        }
        if let text = flags.metricsAddress {
            if text.isEmpty {
                configuration.metricsAddress = nil
            } else if let address = problems.collect({ () throws(ConfigurationError) in
                try ListenAddress(parsing: text, path: "--metrics-addr")
            }) {
                configuration.metricsAddress = address
            }
        }
        switch (flags.tlsCertFile ?? "", flags.tlsPrivateKeyFile ?? "") {
        case ("", ""):
            break
        case (let certificate, ""):
            _ = certificate
            problems.add("--tls-private-key-file", "is required with --tls-cert-file")
        case ("", _):
            problems.add("--tls-cert-file", "is required with --tls-private-key-file")
        case (let certificate, let key):
            for (flag, file) in [("--tls-cert-file", certificate), ("--tls-private-key-file", key)]
            where !FileManager.default.isReadableFile(atPath: file) {
                problems.add(flag, "cannot read \"\(file)\": no such file, or not readable")
            }
            configuration.tls = ServingTLS(certificateFile: certificate, privateKeyFile: key)
        }
        if let kubeconfig = flags.kubeconfig, !kubeconfig.isEmpty {
            configuration.upstream = .kubeconfig(path: kubeconfig)
        }

        if let url = flags.issuerURL {
            if let issuer = problems.collect({ () throws(ConfigurationError) in try issuerFromFlags(url: url, flags) })
            {
                configuration.issuers.append(issuer)
            }
        } else {
            problems.add("--oidc-issuer-url", "is required: the URL of the OIDC issuer whose tokens the proxy accepts")
            if flags.clientID == nil {
                problems.add("--oidc-client-id", "is required: the audience (client ID) the issuer's tokens carry")
            }
        }
        try problems.throwIfAny()
        return configuration
    }

    private static func issuerFromFlags(url: String, _ flags: ProxyFlags) throws(ConfigurationError)
        -> IssuerConfiguration
    {
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

        var caPEM: String?
        if let caFile = flags.caFile, !caFile.isEmpty {
            caPEM = problems.collect { () throws(ConfigurationError) in
                let pem = try readTextFile(caFile, path: "--oidc-ca-file")
                try IssuerValidation.validateCertificatePEM(pem, path: "--oidc-ca-file", file: caFile)
                return pem
            }
        }

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

        var algorithms = Set(SigningAlgorithm.allCases)
        if let list = flags.signingAlgorithms {
            algorithms = []
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
        }

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

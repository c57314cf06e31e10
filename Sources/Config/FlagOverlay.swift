/// Lays the command-line flags over a decoded file, as SPEC §1 says: flags win, and the
/// values they set carry the flag's name so a problem with one is reported at the flag.
enum FlagOverlay {
    /// Applies `flags` to `document`. Returns the issuer the flags add when `--oidc-issuer-url`
    /// names a URL the file does not list (nil otherwise, or when that issuer is invalid).
    static func apply(
        _ flags: ProxyFlags, to document: inout ConfigurationDocument, problems: inout ProblemCollector
    ) -> IssuerConfiguration? {
        if let address = flags.listenAddress { document.listenAddress = Sourced(address, at: "--listen-addr") }
        if let address = flags.metricsAddress { document.metricsAddress = Sourced(address, at: "--metrics-addr") }
        if flags.tlsCertFile != nil || flags.tlsPrivateKeyFile != nil {
            var tls = document.tls ?? TLSDocument(path: "--tls-cert-file")
            if let file = flags.tlsCertFile { tls.certFile = Sourced(file, at: "--tls-cert-file") }
            if let file = flags.tlsPrivateKeyFile { tls.keyFile = Sourced(file, at: "--tls-private-key-file") }
            document.tls = tls
        }
        if let kubeconfig = flags.kubeconfig, !kubeconfig.isEmpty {
            document.upstream = UpstreamDocument(
                path: "--kubeconfig", kubeconfig: Sourced(kubeconfig, at: "--kubeconfig"))
        }

        guard let url = flags.issuerURL else {
            applyClaimDefaults(flags, to: &document)
            for flag in flags.issuerScopedFlagsGiven {
                problems.add(
                    flag,
                    "describes the issuer named by --oidc-issuer-url, which is not given; "
                        + "pass --oidc-issuer-url, or set this in the config file's jwt entries")
            }
            return nil
        }
        guard let index = document.jwt.firstIndex(where: { $0.url?.value == url }) else {
            return problems.collect { () throws(ConfigurationError) in try IssuerFlags.issuer(url: url, flags) }
        }
        override(&document.jwt[index], with: flags, problems: &problems)
        return nil
    }

    /// `--oidc-username-claim` / `--oidc-groups-claim` without `--oidc-issuer-url`: the claim of
    /// every issuer whose mapping names none (neither a claim nor an expression).
    private static func applyClaimDefaults(_ flags: ProxyFlags, to document: inout ConfigurationDocument) {
        for index in document.jwt.indices {
            if let claim = flags.usernameClaim, document.jwt[index].username.claim == nil,
                document.jwt[index].username.expression == nil
            {
                document.jwt[index].username.claim = Sourced(claim, at: "--oidc-username-claim")
            }
            if let claim = flags.groupsClaim, document.jwt[index].groups.claim == nil,
                document.jwt[index].groups.expression == nil
            {
                document.jwt[index].groups.claim = Sourced(claim, at: "--oidc-groups-claim")
            }
        }
    }

    /// The file lists the flag's issuer: each issuer flag given replaces that entry's field.
    private static func override(_ entry: inout JWTDocument, with flags: ProxyFlags, problems: inout ProblemCollector) {
        if let clientID = flags.clientID {
            entry.audiences = Sourced(clientID.isEmpty ? [] : [clientID], at: "--oidc-client-id")
        }
        if let claim = flags.usernameClaim {
            entry.username.claim = Sourced(claim, at: "--oidc-username-claim")
            entry.username.expression = nil
        }
        if let prefix = flags.usernamePrefix { entry.username.prefix = Sourced(prefix, at: "--oidc-username-prefix") }
        if let claim = flags.groupsClaim {
            entry.groups.claim = Sourced(claim, at: "--oidc-groups-claim")
            entry.groups.expression = nil
        }
        if let prefix = flags.groupsPrefix { entry.groups.prefix = Sourced(prefix, at: "--oidc-groups-prefix") }
        if flags.caFile != nil {
            if let pem = IssuerFlags.certificateAuthority(flags, problems: &problems) {
                entry.certificateAuthority = Sourced(pem, at: "--oidc-ca-file")
            } else {
                entry.certificateAuthority = nil
            }
        }
        if !flags.requiredClaims.isEmpty {
            let rules = IssuerFlags.claimValidationRules(flags, problems: &problems).map { rule in
                ClaimRuleDocument(
                    path: "--oidc-required-claim", claim: Sourced(rule.claim, at: "--oidc-required-claim"),
                    requiredValue: Sourced(rule.requiredValue, at: "--oidc-required-claim"))
            }
            entry.claimValidationRules = Sourced(rules, at: "--oidc-required-claim")
        }
        if let algorithms = IssuerFlags.signingAlgorithms(flags, problems: &problems) {
            entry.signingAlgorithms = algorithms
        }
    }
}

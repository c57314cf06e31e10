import FoundationEssentials

/// Turns a decoded file (with the flags laid over it) into the effective `ProxyConfiguration`,
/// reporting every problem at the YAML path or flag it came from.
enum ConfigurationValidator {
    /// kube-apiserver accepts at most this many JWT authenticators.
    static let maximumIssuers = 64

    /// - Parameters:
    ///   - flagIssuer: the issuer `--oidc-issuer-url` adds (already validated), if any.
    ///   - directory: the config file's directory, against which relative file paths resolve.
    static func validate(
        _ document: ConfigurationDocument, flagIssuer: IssuerConfiguration?, directory: String,
        problems: inout ProblemCollector
    ) -> ProxyConfiguration? {
        let before = problems.problems.count
        var configuration = ProxyConfiguration(issuers: [])

        if let text = document.listenAddress {
            if let address = problems.collect({ () throws(ConfigurationError) in
                try ListenAddress(parsing: text.value, path: text.origin)
            }) {
                configuration.listenAddress = address
            }
        }
        if let text = document.metricsAddress {
            if text.value.isEmpty {
                configuration.metricsAddress = nil
            } else if let address = problems.collect({ () throws(ConfigurationError) in
                try ListenAddress(parsing: text.value, path: text.origin)
            }) {
                configuration.metricsAddress = address
            }
        }
        if let tls = document.tls {
            configuration.tls = servingTLS(tls, directory: directory, problems: &problems)
        }
        if let upstream = document.upstream {
            if let source = validateUpstream(upstream, directory: directory, problems: &problems) {
                configuration.upstream = source
            }
        }
        if let ttl = document.tokenCacheTTL {
            if let duration = GoDuration.parse(ttl.value), duration >= .zero {
                configuration.tokenCacheTTL = duration
            } else {
                problems.add(
                    ttl.origin,
                    "\"\(ttl.value)\" is not a duration; write it like \"10s\", \"1m30s\" or \"0\" (0 disables the cache)"
                )
            }
        }
        if let allow = document.allowReservedIdentities { configuration.allowReservedIdentities = allow.value }
        if let readiness = document.readiness {
            if let policy = ReadinessPolicy(rawValue: readiness.value) {
                configuration.readiness = policy
            } else {
                problems.add(
                    readiness.origin,
                    "\"\(readiness.value)\" is not supported; use all (every issuer must be ready) or any (one is enough)"
                )
            }
        }

        configuration.issuers = validateIssuers(document.jwt, flagIssuer: flagIssuer, problems: &problems)
        return problems.problems.count == before ? configuration : nil
    }

    private static func validateIssuers(
        _ entries: [JWTDocument], flagIssuer: IssuerConfiguration?, problems: inout ProblemCollector
    ) -> [IssuerConfiguration] {
        if entries.count > maximumIssuers {
            problems.add("jwt", "lists \(entries.count) issuers; at most \(maximumIssuers) are allowed")
        }
        if entries.isEmpty && flagIssuer == nil {
            problems.add(
                "jwt", "lists no issuers; add at least one (jwt[].issuer.url and audiences), or pass --oidc-issuer-url")
        }

        var issuers: [(entry: JWTDocument?, issuer: IssuerConfiguration)] = []
        var urls: [String: String] = [:]
        var discoveryURLs: [String: String] = [:]
        for entry in entries {
            if let url = entry.url, !url.value.isEmpty {
                if let first = urls[url.value] {
                    problems.add(
                        url.origin, "\"\(url.value)\" is already the URL of \(first); issuer URLs must be unique")
                } else {
                    urls[url.value] = entry.path
                }
            }
            if let discoveryURL = entry.discoveryURL, !discoveryURL.value.isEmpty {
                if let first = discoveryURLs[discoveryURL.value] {
                    problems.add(
                        discoveryURL.origin,
                        "\"\(discoveryURL.value)\" is already the discoveryURL of \(first); discovery URLs must be unique"
                    )
                } else {
                    discoveryURLs[discoveryURL.value] = entry.path
                }
            }
            if let issuer = JWTValidation.validate(entry, problems: &problems) { issuers.append((entry, issuer)) }
        }
        if let flagIssuer { issuers.append((nil, flagIssuer)) }
        return assignNames(issuers, problems: &problems)
    }

    /// Names must be unique: they name the `/readyz` checks. A chosen name that repeats is a
    /// problem; a name derived from the URL that repeats gets `-2`, `-3`, ... so that an
    /// AuthenticationConfiguration (which has no name field) always loads.
    private static func assignNames(
        _ issuers: [(entry: JWTDocument?, issuer: IssuerConfiguration)], problems: inout ProblemCollector
    ) -> [IssuerConfiguration] {
        var taken: [String: String] = [:]
        for (entry, issuer) in issuers {
            guard let name = entry?.name else { continue }
            if let first = taken[name.value] {
                problems.add(
                    name.origin,
                    "\"\(name.value)\" is already the name of \(first); names must be unique (they name /readyz checks)"
                )
            } else {
                taken[name.value] = entry?.path ?? issuer.url
            }
        }
        var result: [IssuerConfiguration] = []
        for (entry, issuer) in issuers {
            var issuer = issuer
            if entry?.name == nil {
                var candidate = issuer.name
                var suffix = 2
                while taken[candidate] != nil {
                    candidate = "\(issuer.name)-\(suffix)"
                    suffix += 1
                }
                issuer.name = candidate
                taken[candidate] = entry?.path ?? "--oidc-issuer-url"
            }
            result.append(issuer)
        }
        return result
    }

    /// The listener's certificate and key: both given, both readable. Paths in the file are
    /// relative to the file's folder.
    static func servingTLS(_ tls: TLSDocument, directory: String, problems: inout ProblemCollector) -> ServingTLS? {
        func field(_ value: Sourced<String>?, _ key: String, flag: String) -> String? {
            guard let value, !value.value.isEmpty else {
                problems.add(
                    tls.path.hasPrefix("-") ? flag : tls.path + "." + key,
                    "is required: the proxy serves HTTPS with a certificate and its private key")
                return nil
            }
            let file =
                value.isFlag || value.value.hasPrefix("/") || directory.isEmpty
                ? value.value : directory + "/" + value.value
            guard FileManager.default.isReadableFile(atPath: file) else {
                problems.add(value.origin, "cannot read \"\(file)\": no such file, or not readable")
                return nil
            }
            return file
        }
        let certificate = field(tls.certFile, "certFile", flag: "--tls-cert-file")
        let key = field(tls.keyFile, "keyFile", flag: "--tls-private-key-file")
        guard let certificate, let key else { return nil }
        return ServingTLS(certificateFile: certificate, privateKeyFile: key)
    }

    private static func validateUpstream(
        _ upstream: UpstreamDocument, directory: String, problems: inout ProblemCollector
    ) -> UpstreamSource? {
        func resolved(_ value: Sourced<String>) -> String {
            value.isFlag || value.value.hasPrefix("/") || directory.isEmpty
                ? value.value : directory + "/" + value.value
        }
        if let kubeconfig = upstream.kubeconfig, !kubeconfig.value.isEmpty {
            var valid = true
            for other in [upstream.server, upstream.certificateAuthorityFile, upstream.tokenFile].compactMap({ $0 }) {
                problems.add(
                    other.origin, "can't be set with kubeconfig; the kubeconfig names the server and credential")
                valid = false
            }
            return valid ? .kubeconfig(path: resolved(kubeconfig)) : nil
        }
        guard let server = upstream.server, !server.value.isEmpty else {
            problems.add(
                upstream.path + ".server",
                "is required in upstream (or give upstream.kubeconfig); omit upstream to run in-cluster")
            return nil
        }
        var valid = true
        if problems.collect({ () throws(ConfigurationError) in
            try parseHTTPSServer(server.value, path: server.origin)
        }) == nil {
            valid = false
        }
        guard let tokenFile = upstream.tokenFile, !tokenFile.value.isEmpty else {
            problems.add(
                upstream.path + ".tokenFile",
                "is required with upstream.server: the file holding the proxy's own bearer token (re-read when it changes)"
            )
            return nil
        }
        let caFile = upstream.certificateAuthorityFile.flatMap { $0.value.isEmpty ? nil : resolved($0) }
        return valid
            ? .server(url: server.value, certificateAuthorityFile: caFile, tokenFile: resolved(tokenFile)) : nil
    }
}

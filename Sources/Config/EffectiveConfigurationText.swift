import Crypto

extension ProxyConfiguration {
    /// The configuration as `check-config` prints it: YAML in the proxy's own shape with every
    /// default filled in. CA bundles are shortened to a summary; nothing secret is printed
    /// (upstream credentials appear as file paths only).
    public var effectiveYAML: String {
        var lines: [String] = ["kind: ProxyConfiguration"]
        lines.append("listenAddr: \(quoted(listenAddress.description))")
        lines.append("metricsAddr: \(quoted(metricsAddress?.description ?? ""))")
        switch upstream {
        case .inCluster:
            lines.append("# upstream: in-cluster (KUBERNETES_SERVICE_HOST and the pod's service-account token)")
        case .kubeconfig(let path):
            lines.append("upstream:")
            lines.append("  kubeconfig: \(quoted(path))")
        case .server(let url, let certificateAuthorityFile, let tokenFile):
            lines.append("upstream:")
            lines.append("  server: \(quoted(url))")
            if let certificateAuthorityFile {
                lines.append("  certificateAuthorityFile: \(quoted(certificateAuthorityFile))")
            }
            lines.append("  tokenFile: \(quoted(tokenFile))")
        }
        lines.append("tokenCacheTTL: \(GoDuration.format(tokenCacheTTL))")
        lines.append("allowReservedIdentities: \(allowReservedIdentities)")
        lines.append("readiness: \(readiness.rawValue)")
        lines.append("jwt:")
        for issuer in issuers {
            lines += issuer.effectiveYAMLLines
        }
        return lines.joined(separator: "\n") + "\n"
    }
}

extension IssuerConfiguration {
    fileprivate var effectiveYAMLLines: [String] {
        var lines = ["  - name: \(quoted(name))", "    issuer:", "      url: \(quoted(url))"]
        if let discoveryURL { lines.append("      discoveryURL: \(quoted(discoveryURL))") }
        lines.append("      audiences: [\(audiences.map(quoted).joined(separator: ", "))]")
        if audiences.count > 1 { lines.append("      audienceMatchPolicy: MatchAny") }
        if let pem = certificateAuthorityPEM {
            lines.append("      certificateAuthority: \(quoted(Self.summary(ofPEM: pem)))")
        } else {
            lines.append("      # certificateAuthority: the system roots")
        }
        if !claimValidationRules.isEmpty {
            lines.append("    claimValidationRules:")
            for rule in claimValidationRules {
                lines.append("      - {claim: \(quoted(rule.claim)), requiredValue: \(quoted(rule.requiredValue))}")
            }
        }
        lines.append("    claimMappings:")
        lines.append(
            "      username: {claim: \(quoted(claimMappings.usernameClaim)), prefix: \(quoted(claimMappings.usernamePrefix))}"
        )
        if let groupsClaim = claimMappings.groupsClaim {
            lines.append("      groups: {claim: \(quoted(groupsClaim)), prefix: \(quoted(claimMappings.groupsPrefix))}")
        } else {
            lines.append("      # groups: not mapped")
        }
        if let uidClaim = claimMappings.uidClaim { lines.append("      uid: {claim: \(quoted(uidClaim))}") }
        if signingAlgorithms != Set(SigningAlgorithm.allCases) {
            lines.append(
                "    # signing algorithms (--oidc-signing-algs): "
                    + signingAlgorithms.sorted().map(\.rawValue).joined(separator: ", "))
        }
        return lines
    }

    /// `<PEM: 2 certificates, sha256 0123abcd…>`: enough to tell bundles apart, short enough to read.
    static func summary(ofPEM pem: String) -> String {
        var count = 0
        var rest = Substring(pem)
        while let range = rest.firstRange(of: "-----BEGIN CERTIFICATE-----") {
            count += 1
            rest = rest[range.upperBound...]
        }
        let digest = SHA256.hash(data: Array(pem.utf8)).prefix(8).map { byte in
            let hex = String(byte, radix: 16)
            return byte < 16 ? "0" + hex : hex
        }.joined()
        return "<PEM: \(count) certificate\(count == 1 ? "" : "s"), sha256 \(digest)…>"
    }
}

/// A YAML double-quoted scalar (JSON string syntax, which YAML reads the same way).
private func quoted(_ text: String) -> String {
    JSONText.quoted(text)
}

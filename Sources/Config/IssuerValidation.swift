import FoundationEssentials

/// kube-apiserver's rules for issuer fields, shared by the flag and file loaders.
enum IssuerValidation {
    static func validateIssuerURL(_ url: String, path: String) throws(ConfigurationError) {
        guard !url.isEmpty else { throw ConfigurationError(path, "is required") }
        guard let components = URLComponents(string: url) else {
            throw ConfigurationError(path, "\"\(url)\" is not a valid URL")
        }
        var problems = ProblemCollector()
        if components.scheme != "https" { problems.add(path, "\"\(url)\": URL scheme must be https") }
        if components.host?.isEmpty ?? true { problems.add(path, "\"\(url)\": URL must have a host") }
        if components.user != nil || components.password != nil {
            problems.add(path, "\"\(url)\": URL must not contain a username or password")
        }
        if components.query != nil { problems.add(path, "\"\(url)\": URL must not contain a query") }
        if components.fragment != nil { problems.add(path, "\"\(url)\": URL must not contain a fragment") }
        try problems.throwIfAny()
    }

    /// A CA bundle must hold at least one PEM certificate; the Issuers module parses it fully.
    static func validateCertificatePEM(_ pem: String, path: String, file: String? = nil) throws(ConfigurationError) {
        let origin = file.map { "\"\($0)\"" } ?? "the value"
        guard pem.contains("-----BEGIN CERTIFICATE-----"), pem.contains("-----END CERTIFICATE-----") else {
            throw ConfigurationError(path, "\(origin) holds no PEM certificate (-----BEGIN CERTIFICATE-----)")
        }
    }
}

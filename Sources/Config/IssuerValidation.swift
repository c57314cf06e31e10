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

    /// A CA bundle must hold at least one PEM certificate, each block base64 of a DER sequence;
    /// the Issuers module parses the certificates fully when it builds the issuer.
    static func validateCertificatePEM(_ pem: String, path: String, file: String? = nil) throws(ConfigurationError) {
        let origin = file.map { "\"\($0)\"" } ?? "the value"
        let begin = "-----BEGIN CERTIFICATE-----"
        let end = "-----END CERTIFICATE-----"
        var rest = Substring(pem)
        var count = 0
        while let start = rest.firstRange(of: begin) {
            count += 1
            guard let stop = rest[start.upperBound...].firstRange(of: end) else {
                throw ConfigurationError(path, "\(origin): certificate \(count) has no \(end) line")
            }
            let body = rest[start.upperBound..<stop.lowerBound].filter { !$0.isWhitespace }
            guard let der = Data(base64Encoded: String(body)), der.first == 0x30 else {
                throw ConfigurationError(
                    path, "\(origin): certificate \(count) is not valid PEM (bad base64 or not DER)")
            }
            rest = rest[stop.upperBound...]
        }
        if count == 0 {
            throw ConfigurationError(path, "\(origin) holds no PEM certificate (-----BEGIN CERTIFICATE-----)")
        }
    }
}

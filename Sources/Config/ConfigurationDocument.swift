/// A configuration file as written, before validation: every value optional and carrying the
/// YAML path (or, after the flag overlay, the flag) it came from. Only the validator turns one
/// into a `ProxyConfiguration`.
struct ConfigurationDocument {
    /// Which of the two accepted shapes the file has (SPEC §2).
    enum Shape: Equatable {
        /// The proxy's own file: `kind: ProxyConfiguration` or no kind.
        case proxy
        /// A kube-apiserver `AuthenticationConfiguration` of this `apiVersion`.
        case authenticationConfiguration(apiVersion: String)
    }

    var shape: Shape = .proxy
    var listenAddress: Sourced<String>?
    var metricsAddress: Sourced<String>?
    var tls: TLSDocument?
    var upstream: UpstreamDocument?
    var tokenCacheTTL: Sourced<String>?
    var allowReservedIdentities: Sourced<Bool>?
    var readiness: Sourced<String>?
    var jwt: [JWTDocument] = []
    /// Settings the file holds that the proxy does not use (an AuthenticationConfiguration's
    /// `anonymous`), to be mentioned rather than silently dropped.
    var notes: [String] = []
}

struct TLSDocument {
    var path: String
    var certFile: Sourced<String>?
    var keyFile: Sourced<String>?
}

struct UpstreamDocument {
    var path: String
    var server: Sourced<String>?
    var certificateAuthorityFile: Sourced<String>?
    var tokenFile: Sourced<String>?
    var kubeconfig: Sourced<String>?
}

/// One `jwt[]` entry: an issuer and how its tokens map to an identity.
struct JWTDocument {
    /// `jwt[3]`, or `--oidc-issuer-url` for the issuer the flags add.
    var path: String
    var url: Sourced<String>?
    var discoveryURL: Sourced<String>?
    var audiences: Sourced<[String]>?
    var audienceMatchPolicy: Sourced<String>?
    var certificateAuthority: Sourced<String>?
    var egressSelectorType: Sourced<String>?
    var name: Sourced<String>?
    /// nil: the file gives none (the flags may still set them).
    var claimValidationRules: Sourced<[ClaimRuleDocument]>?
    var username = MappingDocument()
    var groups = MappingDocument()
    var uid = MappingDocument()
    /// The path of a non-empty `claimMappings.extra`, which the proxy does not implement yet.
    var extra: String?
    /// The path of a non-empty `userValidationRules`, which the proxy does not implement yet.
    var userValidationRules: String?
    /// Only the `--oidc-signing-algs` flag sets this (already checked); the file has no such key.
    var signingAlgorithms: Set<SigningAlgorithm>?
    /// Whether kube-apiserver's rules for an AuthenticationConfiguration apply as they are: no
    /// defaults for the username claim, and a prefix required beside every claim. False for the
    /// proxy's own file, whose omitted mappings and prefixes have defaults (SPEC §2).
    var kubeAPIServerRules: Bool

    init(path: String, kubeAPIServerRules: Bool) {
        self.path = path
        self.kubeAPIServerRules = kubeAPIServerRules
    }

    func child(_ key: String) -> String { "\(path).\(key)" }
}

/// A `claimMappings` entry: `username`, `groups` (claim or expression, and a prefix) or `uid`.
struct MappingDocument {
    var claim: Sourced<String>?
    var prefix: Sourced<String>?
    var expression: Sourced<String>?
}

/// A `claimValidationRules[]` entry.
struct ClaimRuleDocument {
    var path: String
    var claim: Sourced<String>?
    var requiredValue: Sourced<String>?
    var expression: Sourced<String>?
    var message: Sourced<String>?
}

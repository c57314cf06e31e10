/// Where the API server's address and the proxy's credential come from.
public enum UpstreamSource: Sendable, Hashable {
    case inCluster
    case kubeconfig(path: String)
    /// An API server named in the config file's `upstream`: its `https://` URL, the CA bundle
    /// that signs its certificate (nil: the system roots) and the proxy's bearer-token file.
    case server(url: String, certificateAuthorityFile: String?, tokenFile: String)
}

/// Whether `/readyz` needs every issuer ready or any one.
public enum ReadinessPolicy: String, Sendable, Hashable {
    case all
    case any
}

/// The certificate and key the proxy listener serves HTTPS with (PEM files).
public struct ServingTLS: Sendable, Hashable {
    public var certificateFile: String
    public var privateKeyFile: String

    public init(certificateFile: String, privateKeyFile: String) {
        self.certificateFile = certificateFile
        self.privateKeyFile = privateKeyFile
    }
}

/// The effective, validated configuration: every field has passed validation, so the rest of
/// the program never re-checks it. Only `ConfigurationLoader` makes one from user input.
public struct ProxyConfiguration: Sendable, Hashable {
    public var listenAddress: ListenAddress
    /// nil: no metrics listener.
    public var metricsAddress: ListenAddress?
    /// nil: the listener speaks plain HTTP (behind a TLS-terminating Ingress or mesh).
    public var tls: ServingTLS?
    public var upstream: UpstreamSource
    public var issuers: [IssuerConfiguration]
    /// How long a verified token's identity is reused; zero disables the cache.
    public var tokenCacheTTL: Duration
    /// Whether usernames and groups beginning `system:` may be impersonated.
    public var allowReservedIdentities: Bool
    public var readiness: ReadinessPolicy

    public init(
        listenAddress: ListenAddress = ListenAddress(host: "", port: 8080),
        metricsAddress: ListenAddress? = ListenAddress(host: "", port: 9090),
        tls: ServingTLS? = nil,
        upstream: UpstreamSource = .inCluster,
        issuers: [IssuerConfiguration],
        tokenCacheTTL: Duration = .seconds(10),
        allowReservedIdentities: Bool = false,
        readiness: ReadinessPolicy = .all
    ) {
        self.listenAddress = listenAddress
        self.metricsAddress = metricsAddress
        self.tls = tls
        self.upstream = upstream
        self.issuers = issuers
        self.tokenCacheTTL = tokenCacheTTL
        self.allowReservedIdentities = allowReservedIdentities
        self.readiness = readiness
    }
}

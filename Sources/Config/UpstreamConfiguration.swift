import FoundationEssentials

/// How the proxy proves its own identity to the API server.
public enum UpstreamCredential: Sendable, Hashable {
    /// A bearer token re-read from this file when it changes (projected service-account tokens rotate).
    case bearerTokenFile(path: String)
    /// A fixed bearer token, from a kubeconfig's `token` field.
    case bearerToken(String)
    /// A TLS client certificate and key, both PEM. Either may come from a file (a kubeconfig's
    /// `client-certificate` / `client-key`), which is then re-read while the proxy runs, as
    /// client-go does: cert-manager and kubeadm renew client certificates in place.
    case clientCertificate(
        certificatePEM: String, privateKeyPEM: String, certificateFile: String? = nil, keyFile: String? = nil)
    /// No credential of the proxy's own (the API server must then trust the connection otherwise).
    case none
}

/// Where the API server is and how to reach it, resolved from the in-cluster environment
/// or from a kubeconfig's current context.
public struct UpstreamConfiguration: Sendable, Hashable {
    /// Scheme `https`, host and port of the API server.
    public var host: String
    public var port: Int
    /// PEM bundle trusted for the API server; nil means the system roots.
    public var certificateAuthorityPEM: String?
    public var insecureSkipTLSVerify: Bool
    /// Overrides the name checked against the API server's certificate (kubeconfig `tls-server-name`).
    public var tlsServerName: String?
    public var credential: UpstreamCredential
    /// Where this came from, for logs and errors: "in-cluster" or the kubeconfig path.
    public var source: String

    public init(
        host: String,
        port: Int,
        certificateAuthorityPEM: String?,
        insecureSkipTLSVerify: Bool = false,
        tlsServerName: String? = nil,
        credential: UpstreamCredential,
        source: String
    ) {
        self.host = host
        self.port = port
        self.certificateAuthorityPEM = certificateAuthorityPEM
        self.insecureSkipTLSVerify = insecureSkipTLSVerify
        self.tlsServerName = tlsServerName
        self.credential = credential
        self.source = source
    }

    /// `https://host:port`, with IPv6 hosts bracketed.
    public var serverURL: String {
        host.contains(":") ? "https://[\(host)]:\(port)" : "https://\(host):\(port)"
    }

    /// The standard location of a pod's service-account credentials.
    public static let serviceAccountDirectory = "/var/run/secrets/kubernetes.io/serviceaccount"

    /// The API server as a pod sees it: `KUBERNETES_SERVICE_HOST`/`_PORT`, and the
    /// service-account token and CA mounted under `serviceAccountDirectory`.
    public static func inCluster(
        environment: [String: String],
        serviceAccountDirectory: String = UpstreamConfiguration.serviceAccountDirectory
    ) throws(ConfigurationError) -> UpstreamConfiguration {
        guard let host = environment["KUBERNETES_SERVICE_HOST"], !host.isEmpty,
            let portText = environment["KUBERNETES_SERVICE_PORT"], let port = Int(portText)
        else {
            throw ConfigurationError(
                "--kubeconfig",
                "not running in a cluster (KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set); "
                    + "pass --kubeconfig FILE to name the API server, or run the proxy in a pod")
        }
        let tokenPath = serviceAccountDirectory + "/token"
        let caPath = serviceAccountDirectory + "/ca.crt"
        guard FileManager.default.isReadableFile(atPath: tokenPath) else {
            throw ConfigurationError(
                tokenPath,
                "the service-account token is missing; mount it (automountServiceAccountToken: true) "
                    + "or pass --kubeconfig FILE")
        }
        let caPEM = try readTextFile(caPath, path: caPath)
        return UpstreamConfiguration(
            host: host, port: port, certificateAuthorityPEM: caPEM,
            credential: .bearerTokenFile(path: tokenPath), source: "in-cluster")
    }
}

extension UpstreamConfiguration {
    /// Resolves where the API server is: reads the in-cluster environment, the kubeconfig, or
    /// the config file's `upstream` files. Reads files only; never contacts the server.
    public static func resolve(
        _ source: UpstreamSource, environment: [String: String]
    ) throws(ConfigurationError) -> UpstreamConfiguration {
        switch source {
        case .inCluster:
            return try .inCluster(environment: environment)
        case .kubeconfig(let path):
            return try .fromKubeconfig(file: path)
        case .server(let url, let certificateAuthorityFile, let tokenFile):
            let (host, port) = try parseHTTPSServer(url, path: "upstream.server")
            var caPEM: String?
            if let certificateAuthorityFile {
                caPEM = try readTextFile(certificateAuthorityFile, path: "upstream.certificateAuthorityFile")
            }
            guard FileManager.default.isReadableFile(atPath: tokenFile) else {
                throw ConfigurationError(
                    "upstream.tokenFile", "cannot read \"\(tokenFile)\": no such file, or not readable")
            }
            return UpstreamConfiguration(
                host: host, port: port, certificateAuthorityPEM: caPEM, credential: .bearerTokenFile(path: tokenFile),
                source: "upstream.server")
        }
    }
}

/// Reads a whole file, naming `path` (a flag or field) in the error.
public func readFileBytes(_ file: String, path: String) throws(ConfigurationError) -> [UInt8] {
    guard let data = FileManager.default.contents(atPath: file) else {
        throw ConfigurationError(path, "cannot read \"\(file)\": no such file, or not readable")
    }
    return Array(data)
}

/// Reads a whole text file, naming `path` (a flag or field) in the error.
public func readTextFile(_ file: String, path: String) throws(ConfigurationError) -> String {
    guard let text = String(data: Data(try readFileBytes(file, path: path)), encoding: .utf8) else {
        throw ConfigurationError(path, "\"\(file)\" is not UTF-8 text")
    }
    return text
}

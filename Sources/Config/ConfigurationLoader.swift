import Crypto
import FoundationEssentials

/// The bytes of a config file as read at one moment, and their SHA-256: what was loaded, and
/// what the file watcher compares to notice a change.
public struct ConfigurationFile: Sendable, Hashable {
    public var path: String
    public var bytes: [UInt8]
    /// Lowercase hex SHA-256 of `bytes`.
    public var sha256: String

    public init(path: String, bytes: [UInt8]) {
        self.path = path
        self.bytes = bytes
        self.sha256 = SHA256.hash(data: bytes).map { byte in
            let hex = String(byte, radix: 16)
            return byte < 16 ? "0" + hex : hex
        }.joined()
    }

    /// Reads `path`, following symlinks (a mounted ConfigMap's `..data` swap included).
    public static func read(_ path: String) throws(ConfigurationError) -> ConfigurationFile {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigurationError("--config", "cannot read \"\(path)\": no such file, or not readable")
        }
        return ConfigurationFile(path: path, bytes: Array(data))
    }

    /// The directory relative paths in the file resolve against.
    var directory: String {
        path.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
    }
}

/// A validated configuration and where it came from.
public struct LoadedConfiguration: Sendable {
    public var configuration: ProxyConfiguration
    /// The file it was read from; nil in flags-only mode.
    public var file: ConfigurationFile?
    /// Settings the file holds that the proxy ignores on purpose (worth a log line).
    public var notes: [String]
}

/// Builds the effective configuration from flags and, with `--config`, a file, reporting every
/// problem at once.
public enum ConfigurationLoader {
    /// The effective configuration; reads `flags.configFile` when it is set.
    public static func load(flags: ProxyFlags) throws(ConfigurationError) -> ProxyConfiguration {
        try loadWithSource(flags: flags).configuration
    }

    /// Like `load(flags:)`, also returning the file's bytes and hash.
    public static func loadWithSource(flags: ProxyFlags) throws(ConfigurationError) -> LoadedConfiguration {
        guard let path = flags.configFile else {
            return LoadedConfiguration(configuration: try loadFlagsOnly(flags), file: nil, notes: [])
        }
        guard !path.isEmpty else { throw ConfigurationError("--config", "must name a file") }
        return try load(flags: flags, file: try ConfigurationFile.read(path))
    }

    /// Decodes `file`, lays `flags` over it and validates the result (SPEC §1 and §2).
    public static func load(flags: ProxyFlags, file: ConfigurationFile) throws(ConfigurationError)
        -> LoadedConfiguration
    {
        var problems = ProblemCollector()
        guard let text = String(validating: file.bytes, as: UTF8.self) else {
            throw ConfigurationError(file.path, "is not UTF-8 text")
        }
        guard var document = ConfigurationDecoder.decode(yaml: text, file: file.path, problems: &problems) else {
            try problems.throwIfAny()
            throw ConfigurationError(file.path, "holds no configuration")
        }
        let flagIssuer = FlagOverlay.apply(flags, to: &document, problems: &problems)
        let configuration = ConfigurationValidator.validate(
            document, flagIssuer: flagIssuer, directory: file.directory, problems: &problems)
        try problems.throwIfAny()
        guard let configuration else { throw ConfigurationError(file.path, "is not valid") }
        return LoadedConfiguration(configuration: configuration, file: file, notes: document.notes)
    }

    /// The seed's mode: one issuer, entirely from flags.
    private static func loadFlagsOnly(_ flags: ProxyFlags) throws(ConfigurationError) -> ProxyConfiguration {
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
        if flags.tlsCertFile != nil || flags.tlsPrivateKeyFile != nil {
            let tls = TLSDocument(
                path: "--tls-cert-file", certFile: flags.tlsCertFile.map { Sourced($0, at: "--tls-cert-file") },
                keyFile: flags.tlsPrivateKeyFile.map { Sourced($0, at: "--tls-private-key-file") })
            configuration.tls = ConfigurationValidator.servingTLS(tls, directory: "", problems: &problems)
        }
        if let kubeconfig = flags.kubeconfig, !kubeconfig.isEmpty {
            configuration.upstream = .kubeconfig(path: kubeconfig)
        }

        if let url = flags.issuerURL {
            let issuer = problems.collect { () throws(ConfigurationError) in try IssuerFlags.issuer(url: url, flags) }
            if let issuer { configuration.issuers.append(issuer) }
        } else {
            problems.add(
                "--oidc-issuer-url",
                "is required: the URL of the OIDC issuer whose tokens the proxy accepts (or give --config FILE)")
            if flags.clientID == nil {
                problems.add("--oidc-client-id", "is required: the audience (client ID) the issuer's tokens carry")
            }
        }
        try problems.throwIfAny()
        return configuration
    }
}

import ArgumentParser
import Config

/// The flags of the default (serving) command; the seed's flags keep their names and defaults.
struct ServeOptions: ParsableArguments {
    @Option(
        name: .customLong("config"),
        help: ArgumentHelp(
            "YAML configuration: the proxy's own file or a kube-apiserver AuthenticationConfiguration.",
            discussion: "Re-read on SIGHUP and when its content changes; flags override it.",
            valueName: "file"))
    var configFile: String?

    @Option(name: .customLong("oidc-issuer-url"), help: "URL of the OIDC issuer whose tokens are accepted (https).")
    var issuerURL: String?

    @Option(name: .customLong("oidc-client-id"), help: "Audience (client ID) the issuer's tokens must carry.")
    var clientID: String?

    @Option(name: .customLong("oidc-username-claim"), help: "Claim mapped to Impersonate-User. (default: email)")
    var usernameClaim: String?

    @Option(name: .customLong("oidc-groups-claim"), help: "Claim mapped to Impersonate-Group. (default: groups)")
    var groupsClaim: String?

    @Option(name: .customLong("oidc-username-prefix"), help: "Prefix added to every username. (default: none)")
    var usernamePrefix: String?

    @Option(name: .customLong("oidc-groups-prefix"), help: "Prefix added to every group. (default: none)")
    var groupsPrefix: String?

    @Option(name: .customLong("oidc-ca-file"), help: "PEM bundle trusted for the issuer. (default: system roots)")
    var caFile: String?

    @Option(
        name: .customLong("oidc-required-claim"),
        help: "CLAIM=VALUE a token must carry; repeatable.")
    var requiredClaims: [String] = []

    @Option(
        name: .customLong("oidc-signing-algs"),
        help: "Comma-separated JWS algorithms accepted. (default: RS/ES/PS 256/384/512)")
    var signingAlgorithms: String?

    @Option(name: .customLong("listen-addr"), help: "Address of the proxy listener. (default: :8080)")
    var listenAddress: String?

    @Option(
        name: .customLong("metrics-addr"),
        help: "Address of the metrics listener; \"\" disables it. (default: :9090)")
    var metricsAddress: String?

    @Option(
        name: .customLong("kubeconfig"),
        help: "Reach the API server through this kubeconfig's current context. (default: in-cluster)")
    var kubeconfig: String?

    @Option(
        name: .customLong("tls-cert-file"), help: "Serve HTTPS with this PEM certificate chain. (default: plain HTTP)")
    var tlsCertFile: String?

    @Option(name: .customLong("tls-private-key-file"), help: "The PEM private key for --tls-cert-file.")
    var tlsPrivateKeyFile: String?

    @Option(
        name: .customLong("shutdown-grace-period"),
        help:
            "On SIGTERM, how long requests in flight and exec/port-forward sessions may take to finish (e.g. 30s, 2m).")
    var shutdownGracePeriod: String = "30s"

    @Option(
        name: .customLong("upgrade-idle-timeout"),
        help:
            "Close an exec, attach or port-forward session after this long with no bytes either way (e.g. 30m); 0 never does."
    )
    var upgradeIdleTimeout: String = "0"

    @Option(name: [.customShort("v"), .customLong("v")], help: "Log verbosity: 0 info, 2 debug, 4 trace.")
    var verbosity: Int = 0

    @Option(name: .customLong("log-format"), help: "Log line format: text or json.")
    var logFormat: LogFormat = .text

    /// `--shutdown-grace-period` as a duration.
    func gracePeriod() throws -> Duration {
        try Self.duration(shutdownGracePeriod, flag: "--shutdown-grace-period")
    }

    /// `--upgrade-idle-timeout` as a duration, or nil for 0 (no idle timeout, the default).
    func upgradeIdleLimit() throws -> Duration? {
        let duration = try Self.duration(upgradeIdleTimeout, flag: "--upgrade-idle-timeout", allowingBareZero: true)
        // TimeAmount counts nanoseconds in 64 bits: anything past a century is "never" anyway.
        return duration == .zero ? nil : min(duration, .seconds(100 * 365 * 86_400))
    }

    /// A number with `ms`, `s`, `m` or `h` (and a bare `0` where zero means off).
    private static func duration(_ text: String, flag: String, allowingBareZero: Bool = false) throws -> Duration {
        if allowingBareZero && text == "0" { return .zero }
        let digits = text.prefix { $0.isNumber }
        let units: [String: Duration] = [
            "ms": .milliseconds(1), "s": .seconds(1), "m": .seconds(60), "h": .seconds(3600),
        ]
        guard digits.count <= 9, let value = Int(digits), let unit = units[String(text.dropFirst(digits.count))] else {
            throw ValidationError("\(flag): \"\(text)\" is not a duration; write it like 30s, 500ms or 2m")
        }
        return unit * value
    }

    var flags: ProxyFlags {
        var flags = ProxyFlags()
        flags.configFile = configFile
        flags.issuerURL = issuerURL
        flags.clientID = clientID
        flags.usernameClaim = usernameClaim
        flags.groupsClaim = groupsClaim
        flags.usernamePrefix = usernamePrefix
        flags.groupsPrefix = groupsPrefix
        flags.caFile = caFile
        flags.requiredClaims = requiredClaims
        flags.signingAlgorithms = signingAlgorithms
        flags.listenAddress = listenAddress
        flags.metricsAddress = metricsAddress
        flags.kubeconfig = kubeconfig
        flags.tlsCertFile = tlsCertFile
        flags.tlsPrivateKeyFile = tlsPrivateKeyFile
        return flags
    }
}

extension LogFormat: ExpressibleByArgument {}

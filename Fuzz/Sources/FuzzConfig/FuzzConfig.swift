import Config
import FuzzSupport

/// The executable's entry point (SwiftPM's name for it): libFuzzer's driver.
@_cdecl("FuzzConfig_main")
public func fuzzConfigMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runLibFuzzer(argc, argv, target: fuzzConfig)
}

/// YAML bytes → decoded and validated configuration, both shapes (the proxy's own file and
/// kube-apiserver's AuthenticationConfiguration), without and with an issuer from flags laid over.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzConfig(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    let bytes = inputBytes(data, count)
    let file = ConfigurationFile(path: "/fuzz/config.yaml", bytes: bytes)
    var flags = ProxyFlags()
    load(file, flags: flags)
    flags.issuerURL = "https://idp-a.example.com"
    flags.clientID = "kubernetes"
    flags.usernamePrefix = "a:"
    load(file, flags: flags)
    return 0
}

/// A file either loads into a configuration that holds kube-apiserver's rules, or is refused
/// with problems that each name a field (or the file, or a flag) and say what is wrong.
func load(_ file: ConfigurationFile, flags: ProxyFlags) {
    do {
        let loaded = try ConfigurationLoader.load(flags: flags, file: file)
        check(loaded.configuration)
        _ = loaded.configuration.effectiveYAML
    } catch {
        checkProblems(error)
    }
}

func check(_ configuration: ProxyConfiguration) {
    let issuers = configuration.issuers
    require(!issuers.isEmpty && issuers.count <= 64, "loaded \(issuers.count) issuers")
    require(Set(issuers.map(\.url)).count == issuers.count, "issuer URLs repeat")
    require(Set(issuers.map(\.name)).count == issuers.count, "issuer names repeat")
    require(configuration.tokenCacheTTL >= .zero, "negative tokenCacheTTL")
    for issuer in issuers {
        require(issuer.url.hasPrefix("https://"), "issuer URL \(issuer.url) is not https")
        require(!issuer.url.contains("?") && !issuer.url.contains("#"), "issuer URL \(issuer.url) has a query")
        require(!issuer.audiences.isEmpty, "issuer \(issuer.url) has no audience")
        require(!issuer.signingAlgorithms.isEmpty, "issuer \(issuer.url) allows no algorithm")
        require(!issuer.claimMappings.usernameClaim.isEmpty, "issuer \(issuer.url) maps no username claim")
        let claims = issuer.claimValidationRules.map(\.claim)
        require(Set(claims).count == claims.count, "claim rules repeat a claim")
        if let discoveryURL = issuer.discoveryURL {
            require(discoveryURL.hasPrefix("https://"), "discovery URL \(discoveryURL) is not https")
        }
    }
}

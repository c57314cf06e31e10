import Config
import FuzzSupport

/// The executable's entry point (SwiftPM's name for it): libFuzzer's driver.
@_cdecl("FuzzKubeconfig_main")
public func fuzzKubeconfigMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runLibFuzzer(argc, argv, target: fuzzKubeconfig)
}

/// Kubeconfig bytes → the upstream settings of its current context (server, CA, credential).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzKubeconfig(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    let bytes = inputBytes(data, count)
    guard let text = String(validating: bytes, as: UTF8.self) else { return 0 }
    do {
        let upstream = try UpstreamConfiguration.fromKubeconfig(text: text, file: "/fuzz/kubeconfig")
        check(upstream)
    } catch {
        checkProblems(error)
    }
    return 0
}

/// Settings the gateway can dial: a host, a TCP port, and a credential that fits in a header.
func check(_ upstream: UpstreamConfiguration) {
    require(!upstream.host.isEmpty, "no host")
    require((1...65_535).contains(upstream.port), "port \(upstream.port) is not a TCP port")
    require(!hasControlCharacter(upstream.host), "the host holds a control character")
    if case .bearerToken(let token) = upstream.credential {
        require(!hasControlCharacter(token), "the bearer token would break the Authorization header")
    }
}

import FuzzSupport

/// The executable's entry point (SwiftPM's name for it): libFuzzer's driver.
@_cdecl("FuzzToken_main")
public func fuzzTokenMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runLibFuzzer(argc, argv, target: fuzzToken)
}

/// Bearer token → verification result, against the fixed key set of `FixedIssuers`: JWT
/// parsing, base64url, JSON, the standard claims and the mapping of claims of every type.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzToken(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    let bytes = inputBytes(data, count)
    FixedIssuers.judge(TokenInput.token(from: bytes))
    return 0
}

import CFuzzerDriver

/// A fuzz target's entry point: the input's bytes, 0 when the input was handled.
public typealias FuzzTarget = @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt

/// Hands the process to libFuzzer's driver with `target` as the fuzz target; call it from the
/// executable's `<Target>_main` (see `CFuzzerDriver.h` for why not from libFuzzer's `main`).
public func runLibFuzzer(
    _ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?, target: FuzzTarget
) -> CInt {
    fuzz_run_driver(argc, argv, target)
}

/// The fuzzer's input as bytes (libFuzzer may pass a null pointer for the empty input).
public func inputBytes(_ data: UnsafePointer<UInt8>?, _ count: Int) -> [UInt8] {
    guard let data, count > 0 else { return [] }
    return Array(UnsafeBufferPointer(start: data, count: count))
}

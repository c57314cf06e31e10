import Config

/// Stops the fuzzer with `message` when an invariant does not hold: libFuzzer records the
/// input as a crash, to become a regression test in the main package's test suite.
public func require(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition { fatalError("invariant violated: \(message())") }
}

/// C0 controls, DEL and the C1 range: nothing the proxy writes into a header may hold one.
public func hasControlCharacter(_ text: String) -> Bool {
    text.unicodeScalars.contains { $0.value < 0x20 || (0x7F...0x9F).contains($0.value) }
}

/// A refused configuration says what is wrong and where: every problem names a field (or the
/// file, or a flag) and has a message.
public func checkProblems(_ error: ConfigurationError) {
    require(!error.problems.isEmpty, "a refusal without problems")
    for problem in error.problems {
        require(!problem.path.isEmpty, "a problem names no field: \(problem.message)")
        require(!problem.message.isEmpty, "a problem at \(problem.path) says nothing")
    }
}

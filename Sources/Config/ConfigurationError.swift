/// One thing wrong with the configuration, located by the path a user can find it at:
/// a YAML path such as `jwt[1].issuer.url`, or a flag such as `--oidc-issuer-url`.
public struct ConfigurationProblem: Sendable, Hashable, CustomStringConvertible {
    /// Where the problem is: a YAML path, a flag, or a file.
    public var path: String
    /// What is wrong and, where it helps, what to do about it.
    public var message: String

    public init(_ path: String, _ message: String) {
        self.path = path
        self.message = message
    }

    public var description: String { "\(path): \(message)" }
}

/// Every problem found while building a configuration, reported together so an operator
/// can fix them in one pass rather than one restart at a time.
public struct ConfigurationError: Error, Sendable, CustomStringConvertible {
    public var problems: [ConfigurationProblem]

    public init(_ problems: [ConfigurationProblem]) {
        self.problems = problems
    }

    public init(_ path: String, _ message: String) {
        self.problems = [ConfigurationProblem(path, message)]
    }

    public var description: String {
        problems.map(\.description).joined(separator: "\n")
    }
}

/// Collects problems while validating, so that validation reports all of them at once.
struct ProblemCollector {
    private(set) var problems: [ConfigurationProblem] = []

    mutating func add(_ path: String, _ message: String) {
        problems.append(ConfigurationProblem(path, message))
    }

    mutating func add(contentsOf error: ConfigurationError) {
        problems.append(contentsOf: error.problems)
    }

    /// Runs `body`, recording its error instead of propagating it; returns nil on failure.
    mutating func collect<T>(_ body: () throws(ConfigurationError) -> T) -> T? {
        do {
            return try body()
        } catch {
            problems.append(contentsOf: error.problems)
            return nil
        }
    }

    func throwIfAny() throws(ConfigurationError) {
        if !problems.isEmpty { throw ConfigurationError(problems) }
    }
}

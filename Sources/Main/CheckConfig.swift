import ArgumentParser
import Config
import FoundationEssentials
import Issuers

/// `kube-impersonate-proxy check-config --config FILE [flags]`: loads the file, lays the flags
/// over it and validates the result exactly as serving would, without contacting the network.
/// Prints the effective configuration and exits 0, or prints every problem and exits 1.
struct CheckConfig: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-config",
        abstract: "Validate the configuration and print the effective result; never contacts the network.",
        discussion: """
            Takes the same flags as serving. Exits 0 and prints the effective configuration (CA bundles \
            shortened, no secrets), or exits 1 and prints every problem, one per line, each with its \
            YAML path or flag.
            """)

    @OptionGroup var options: ServeOptions

    func run() throws {
        let problems: [String]
        switch Self.check(options.flags, environment: ProcessInfo.processInfo.environment) {
        case .success(let report):
            StandardOutput.write(report)
            return
        case .failure(let error):
            problems = error.problems.map(\.description)
        }
        StandardError.write(problems.joined(separator: "\n") + "\n")
        throw ExitCode(1)
    }

    /// The report `check-config` prints, or every problem found.
    static func check(_ flags: ProxyFlags, environment: [String: String]) -> Result<String, ConfigurationError> {
        let loaded: LoadedConfiguration
        do {
            loaded = try ConfigurationLoader.loadWithSource(flags: flags)
        } catch {
            return .failure(error)
        }
        var problems: [ConfigurationProblem] = []
        for setupError in IssuerSet.setupProblems(of: loaded.configuration) {
            problems.append(ConfigurationProblem(setupError.issuer, setupError.message))
        }
        // In-cluster settings exist only inside a pod; an explicit upstream's files are checked here.
        if loaded.configuration.upstream != .inCluster {
            do {
                _ = try UpstreamConfiguration.resolve(loaded.configuration.upstream, environment: environment)
            } catch {
                problems += error.problems
            }
        }
        if !problems.isEmpty { return .failure(ConfigurationError(problems)) }

        var report = ""
        if let file = loaded.file {
            report += "# \(file.path): valid (sha256 \(file.sha256))\n"
        } else {
            report += "# flags: valid\n"
        }
        for note in loaded.notes { report += "# note: \(note)\n" }
        report += loaded.configuration.effectiveYAML
        return .success(report)
    }
}

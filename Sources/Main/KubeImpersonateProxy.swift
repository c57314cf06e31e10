import ArgumentParser
import Config
import FoundationEssentials
import Gateway
import Issuers
import Logging
import NIOPosix
import ServiceLifecycle

#if canImport(Glibc)
    import Glibc
#endif

@main
struct KubeImpersonateProxy: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kube-impersonate-proxy",
        abstract: "A reverse proxy for the Kubernetes API that turns verified OIDC tokens into impersonation.",
        discussion: """
            Verifies each request's OIDC bearer token and forwards it to the API server with \
            Impersonate-User / Impersonate-Group headers, using the proxy's own credential.
            """,
        version: ProxyVersion.current
    )

    @OptionGroup var options: ServeOptions

    /// Runs like `AsyncParsableCommand.main`, but exits 2 on a usage error, as the Go seed did.
    static func main() async {
        do {
            let command = try parseAsRoot()
            guard let command = command as? KubeImpersonateProxy else {
                var other = command
                try other.run()
                return
            }
            try await command.run()
        } catch {
            let code = exitCode(for: error)
            if code == .validationFailure {
                StandardError.write(fullMessage(for: error) + "\n")
                Self.exit(withError: ExitCode(2))
            }
            exit(withError: error)
        }
    }

    func run() async throws {
        let logger = Logging.bootstrap(verbosity: options.verbosity)
        let gracePeriod = try options.gracePeriod()
        let configuration: ProxyConfiguration
        do {
            configuration = try ConfigurationLoader.load(flags: options.flags)
        } catch {
            throw ValidationError(error.description)
        }
        let upstream: UpstreamConfiguration
        do {
            switch configuration.upstream {
            case .inCluster:
                upstream = try .inCluster(environment: ProcessInfo.processInfo.environment)
            case .kubeconfig(let path):
                upstream = try .fromKubeconfig(file: path)
            }
        } catch {
            throw FatalError(error.description)
        }
        try await Server.run(
            configuration: configuration, upstream: upstream, gracePeriod: gracePeriod, logger: logger)
    }
}

/// A startup failure that is not a usage error: printed as is, exit code 1.
struct FatalError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

enum ProxyVersion {
    static let current = "0.1.0"
}

enum StandardError {
    static func write(_ text: String) {
        var text = text
        text.withUTF8 { buffer in
            var offset = 0
            while offset < buffer.count {
                let written = Glibc.write(2, buffer.baseAddress! + offset, buffer.count - offset)
                if written <= 0 { return }
                offset += written
            }
        }
    }
}

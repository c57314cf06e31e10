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
        usage: """
            kube-impersonate-proxy [--config <file>] [<options>]
            kube-impersonate-proxy check-config [--config <file>] [<options>]
            """,
        discussion: """
            Verifies each request's OIDC bearer token and forwards it to the API server with \
            Impersonate-User / Impersonate-Group headers, using the proxy's own credential.
            """,
        version: ProxyVersion.current,
        subcommands: [CheckConfig.self]
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
            LogSink.standardError.flush()
        } catch {
            LogSink.standardError.flush()
            let code = exitCode(for: error)
            if code == .validationFailure {
                StandardError.write(fullMessage(for: error) + "\n")
                Self.exit(withError: ExitCode(2))
            }
            exit(withError: error)
        }
    }

    func run() async throws {
        let logger = Logging.bootstrap(verbosity: options.verbosity, format: options.logFormat)
        let gracePeriod = try options.gracePeriod()
        let upgradeIdleTimeout = try options.upgradeIdleLimit()
        let flags = options.flags
        let loaded: LoadedConfiguration
        do {
            loaded = try ConfigurationLoader.loadWithSource(flags: flags)
        } catch {
            // Problems with flags alone are usage errors (exit 2, as the seed); a file's are not.
            if error.problems.allSatisfy({ $0.path.hasPrefix("-") }) { throw ValidationError(error.description) }
            throw FatalError("invalid configuration in \(flags.configFile ?? "the flags"):\n" + error.description)
        }
        for note in loaded.notes { logger.info("configuration note", metadata: ["note": "\(note)"]) }
        let upstream: UpstreamConfiguration
        do {
            upstream = try .resolve(loaded.configuration.upstream, environment: ProcessInfo.processInfo.environment)
        } catch {
            throw FatalError(error.description)
        }
        try await Server.run(
            loaded: loaded, flags: flags, upstream: upstream, gracePeriod: gracePeriod,
            upgradeIdleTimeout: upgradeIdleTimeout, logger: logger, logFormat: options.logFormat)
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

/// Writes straight to a file descriptor: standard output for `check-config`'s result, standard
/// error for messages before logging is set up.
enum StandardStream {
    static func write(_ text: String, to descriptor: Int32) {
        var text = text
        text.withUTF8 { write(UnsafeRawBufferPointer($0), to: descriptor) }
    }

    /// Writes all of `buffer`, retrying after a signal and after a partial write; gives up on
    /// any other error (nowhere is left to report it).
    static func write(_ buffer: UnsafeRawBufferPointer, to descriptor: Int32) {
        guard let base = buffer.baseAddress else { return }
        var offset = 0
        while offset < buffer.count {
            let written = Glibc.write(descriptor, base + offset, buffer.count - offset)
            if written < 0 && errno == EINTR { continue }
            if written <= 0 { return }
            offset += written
        }
    }
}

enum StandardError {
    static func write(_ text: String) {
        StandardStream.write(text, to: 2)
    }
}

enum StandardOutput {
    static func write(_ text: String) {
        StandardStream.write(text, to: 1)
    }
}

import Config
import FoundationEssentials
import Logging
import NIOConcurrencyHelpers
import NIOSSL

/// The TLS identity of the proxy listener: the configured certificate and key files, watched
/// for changes. A mounted Secret that cert-manager renews swaps a `..data` symlink, so the
/// files' contents are compared, not their inodes. New connections get the newest context;
/// open ones keep theirs. A pair that fails to load is logged and the old one stays.
public final class ServingCertificateStore: Sendable {
    private struct Loaded {
        var context: NIOSSLContext
        var certificate: [UInt8]
        var key: [UInt8]
    }

    public let files: ServingTLS
    private let loaded: NIOLockedValueBox<Loaded>

    /// Loads the pair; errors name the flag or file at fault.
    public init(_ files: ServingTLS) throws(ConfigurationError) {
        self.files = files
        let certificate = try readFileBytes(files.certificateFile, path: "--tls-cert-file")
        let key = try readFileBytes(files.privateKeyFile, path: "--tls-private-key-file")
        let context = try Self.makeContext(certificate: certificate, key: key, files: files)
        self.loaded = NIOLockedValueBox(Loaded(context: context, certificate: certificate, key: key))
    }

    /// The context for the next connection.
    public var context: NIOSSLContext { loaded.withLockedValue { $0.context } }

    /// Re-reads both files; when either changed and the pair loads, it serves from now on.
    /// Returns whether the served pair changed.
    @discardableResult
    public func reloadIfChanged(logger: Logger) -> Bool {
        let certificate: [UInt8]
        let key: [UInt8]
        do {
            certificate = try readFileBytes(files.certificateFile, path: "--tls-cert-file")
            key = try readFileBytes(files.privateKeyFile, path: "--tls-private-key-file")
        } catch {
            logger.warning(
                "cannot read the serving certificate; keeping the current one", metadata: ["error": "\(error)"])
            return false
        }
        let unchanged = loaded.withLockedValue { $0.certificate == certificate && $0.key == key }
        if unchanged { return false }
        do {
            let context = try Self.makeContext(certificate: certificate, key: key, files: files)
            loaded.withLockedValue { $0 = Loaded(context: context, certificate: certificate, key: key) }
            logger.info("serving a new TLS certificate", metadata: ["file": "\(files.certificateFile)"])
            return true
        } catch {
            // Remember the bad pair so it is reported once, not every poll.
            loaded.withLockedValue {
                $0.certificate = certificate
                $0.key = key
            }
            logger.warning(
                "the new serving certificate does not load; keeping the current one", metadata: ["error": "\(error)"])
            return false
        }
    }

    /// Polls the files every `interval` until cancelled.
    public func runReloads(every interval: Duration = .seconds(2), logger: Logger) async {
        while !Task.isCancelled {
            try? await Task.sleep(for: interval)
            reloadIfChanged(logger: logger)
        }
    }

    /// TLS 1.2 or later, BoringSSL's modern cipher suites, ALPN `h2` then `http/1.1`.
    private static func makeContext(certificate: [UInt8], key: [UInt8], files: ServingTLS) throws(ConfigurationError)
        -> NIOSSLContext
    {
        let chain: [NIOSSLCertificate]
        do {
            chain = try NIOSSLCertificate.fromPEMBytes(certificate)
        } catch {
            throw ConfigurationError(
                "--tls-cert-file", "\"\(files.certificateFile)\" is not a PEM certificate chain: \(error)")
        }
        guard !chain.isEmpty else {
            throw ConfigurationError("--tls-cert-file", "\"\(files.certificateFile)\" holds no certificate")
        }
        let privateKey: NIOSSLPrivateKey
        do {
            privateKey = try NIOSSLPrivateKey(bytes: key, format: .pem)
        } catch {
            throw ConfigurationError(
                "--tls-private-key-file", "\"\(files.privateKeyFile)\" is not a PEM private key: \(error)")
        }
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(privateKey))
        configuration.minimumTLSVersion = .tlsv12
        configuration.applicationProtocols = ["h2", "http/1.1"]
        do {
            return try NIOSSLContext(configuration: configuration)
        } catch {
            throw ConfigurationError(
                "--tls-cert-file",
                "the certificate in \"\(files.certificateFile)\" and the key in \"\(files.privateKeyFile)\" "
                    + "do not form a usable pair: \(error)")
        }
    }
}

import Config
import FoundationEssentials
import Logging
import NIOConcurrencyHelpers
import NIOSSL

/// The proxy's own way into the API server: the TLS contexts (CA, optional client certificate)
/// and the bearer token. A token file is re-read while the proxy runs, so that a rotated
/// projected service-account token is picked up without a restart; so are a kubeconfig's client
/// certificate and key files, renewed in place by cert-manager or `kubeadm certs renew`.
public final class UpstreamCredentials: Sendable {
    public let configuration: UpstreamConfiguration
    /// SNI and certificate name; nil for an IP address, which NIOSSL checks against the peer address.
    let serverHostname: String?
    /// `host:port` for the `Host` header.
    let authority: String
    private let token: NIOLockedValueBox<String?>
    /// What the contexts are made from, less the client certificate.
    private let baseTLS: TLSConfiguration
    private let contexts: NIOLockedValueBox<Contexts>

    private struct Contexts {
        var http1: NIOSSLContext
        /// The same, offering HTTP/2 first by ALPN.
        var multiplexing: NIOSSLContext
        /// The client certificate and key the contexts were made from.
        var client: ClientPair?
        /// The last pair that did not load: reported once, not at every poll.
        var rejected: ClientPair?
        /// The last failure to read the files, reported once while it lasts.
        var readError: String?
    }

    /// A client certificate chain and key, PEM, and where each came from (for errors).
    private struct ClientPair: Equatable {
        var certificate: [UInt8]
        var key: [UInt8]
        /// A file, or the kubeconfig's `client-certificate-data` / `client-key-data`.
        var certificateSource: String
        var keySource: String
    }

    public init(configuration: UpstreamConfiguration) throws(ConfigurationError) {
        self.configuration = configuration
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.minimumTLSVersion = .tlsv12
        let source = configuration.source == "in-cluster" ? "in-cluster CA" : configuration.source
        if let pem = configuration.certificateAuthorityPEM {
            do {
                tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMBytes(Array(pem.utf8)))
            } catch {
                throw ConfigurationError(source, "the API server's certificate authority is not valid PEM: \(error)")
            }
        }
        if configuration.insecureSkipTLSVerify { tls.certificateVerification = .none }
        self.baseTLS = tls
        var initialToken: String?
        var client: ClientPair?
        switch configuration.credential {
        case .clientCertificate(let certificatePEM, let keyPEM, let certificateFile, let keyFile):
            // The files as they are now, byte for byte, so that the first poll compares like
            // with like; the configuration's text if a file has gone since it was read.
            client = ClientPair(
                certificate: certificateFile.flatMap { try? readFileBytes($0, path: $0) } ?? Array(certificatePEM.utf8),
                key: keyFile.flatMap { try? readFileBytes($0, path: $0) } ?? Array(keyPEM.utf8),
                certificateSource: certificateFile ?? "\(configuration.source): client-certificate-data",
                keySource: keyFile ?? "\(configuration.source): client-key-data")
        case .bearerToken(let value):
            initialToken = value
        case .bearerTokenFile(let path):
            initialToken = try Self.readToken(path)
        case .none:
            break
        }
        let pair = try Self.makeContexts(tls, client: client, source: source)
        self.contexts = NIOLockedValueBox(Contexts(http1: pair.http1, multiplexing: pair.multiplexing, client: client))
        let hostname = configuration.tlsServerName ?? configuration.host
        self.serverHostname = Self.isIPAddress(hostname) ? nil : hostname
        self.authority =
            configuration.host.contains(":")
            ? "[\(configuration.host)]:\(configuration.port)" : "\(configuration.host):\(configuration.port)"
        self.token = NIOLockedValueBox(initialToken)
    }

    /// The TLS context for a new HTTP/1.1 connection.
    var sslContext: NIOSSLContext { contexts.withLockedValue { $0.http1 } }

    /// The same, offering HTTP/2 first by ALPN: for the connections that carry long-running
    /// requests as streams (see `MultiplexedUpstream`).
    var multiplexingSSLContext: NIOSSLContext { contexts.withLockedValue { $0.multiplexing } }

    /// Whether the client certificate or its key comes from a file, re-read by `runClientCertificateRefresh`.
    public var hasClientCertificateFiles: Bool {
        guard case .clientCertificate(_, _, let certificateFile, let keyFile) = configuration.credential else {
            return false
        }
        return certificateFile != nil || keyFile != nil
    }

    /// Re-reads the client certificate and key files; when either changed and the new pair
    /// loads, new connections present it. A pair that does not load (a key that does not match
    /// the certificate, caught between two file updates) or a file that cannot be read is
    /// logged once and the current pair stays. Returns whether the pair in use changed.
    @discardableResult
    public func reloadClientCertificateIfChanged(logger: Logger) -> Bool {
        guard let current = contexts.withLockedValue({ $0.client }), hasClientCertificateFiles,
            case .clientCertificate(_, _, let certificateFile, let keyFile) = configuration.credential
        else { return false }
        // Twice at most: a Secret's update may land between the reads of its two files, which
        // then do not match; read again at once, they do.
        for attempt in 1...2 {
            var fresh = current
            do {
                // The error names the kubeconfig's field, and the file.
                let source = configuration.source
                if let certificateFile {
                    fresh.certificate = try readFileBytes(certificateFile, path: "\(source): client-certificate")
                }
                if let keyFile { fresh.key = try readFileBytes(keyFile, path: "\(source): client-key") }
            } catch {
                let message = "\(error)"
                let isNew = contexts.withLockedValue { contexts in
                    defer { contexts.readError = message }
                    return contexts.readError != message
                }
                if isNew {
                    logger.warning(
                        "cannot re-read the upstream client certificate; keeping the current one",
                        metadata: ["error": "\(message)"])
                }
                return false
            }
            let known = contexts.withLockedValue { contexts in
                contexts.readError = nil
                return contexts.client == fresh || contexts.rejected == fresh
            }
            if known { return false }
            do {
                let pair = try Self.makeContexts(baseTLS, client: fresh, source: configuration.source)
                contexts.withLockedValue {
                    $0 = Contexts(http1: pair.http1, multiplexing: pair.multiplexing, client: fresh)
                }
                return true
            } catch {
                if attempt == 1 { continue }
                contexts.withLockedValue { $0.rejected = fresh }
                logger.warning(
                    "the new upstream client certificate does not load; keeping the current one",
                    metadata: ["error": "\(error)"])
            }
        }
        return false
    }

    /// Re-reads the client certificate files every `interval` until cancelled. After a change,
    /// `changed` retires the connections made with the old certificate, then the change is logged.
    public func runClientCertificateRefresh(
        every interval: Duration = .seconds(2), logger: Logger, changed: @Sendable () async -> Void
    ) async {
        guard hasClientCertificateFiles else { return }
        // Ends at cancellation (a graceful shutdown), not after one more round.
        while (try? await Task.sleep(for: interval)) != nil {
            guard reloadClientCertificateIfChanged(logger: logger) else { continue }
            await changed()
            let pair = contexts.withLockedValue { $0.client }
            logger.info(
                "presenting the renewed upstream client certificate on new connections",
                metadata: [
                    "certificate": "\(pair?.certificateSource ?? "")", "key": "\(pair?.keySource ?? "")",
                ])
        }
    }

    /// The contexts for HTTP/1.1 and for HTTP/2 first, with the client certificate and key
    /// when given. Errors name the file (or kubeconfig field) at fault.
    private static func makeContexts(
        _ base: TLSConfiguration, client: ClientPair?, source: String
    ) throws(ConfigurationError) -> (http1: NIOSSLContext, multiplexing: NIOSSLContext) {
        var tls = base
        if let client {
            do {
                tls.certificateChain = try NIOSSLCertificate.fromPEMBytes(client.certificate).map { .certificate($0) }
            } catch {
                throw ConfigurationError(
                    client.certificateSource,
                    "not a PEM client certificate (a CERTIFICATE block is needed): \(error)")
            }
            do {
                tls.privateKey = .privateKey(try NIOSSLPrivateKey(bytes: client.key, format: .pem))
            } catch {
                throw ConfigurationError(client.keySource, "not a PEM private key: \(error)")
            }
        }
        do {
            tls.applicationProtocols = ["http/1.1"]
            let http1 = try NIOSSLContext(configuration: tls)
            tls.applicationProtocols = ["h2", "http/1.1"]
            return (http1, try NIOSSLContext(configuration: tls))
        } catch {
            guard let client else { throw ConfigurationError(source, "cannot set up TLS to the API server: \(error)") }
            throw ConfigurationError(
                client.certificateSource,
                "the certificate and the key in \(client.keySource) do not form a usable pair "
                    + "(does the client key match the certificate?): \(error)")
        }
    }

    /// The `Authorization` value for upstream requests, or nil when the proxy uses a client certificate.
    var authorization: String? {
        token.withLockedValue { $0.map { "Bearer " + $0 } }
    }

    /// Re-reads the token file every `interval` until cancelled; a failed read keeps the old token.
    public func runTokenRefresh(every interval: Duration = .seconds(30), logger: Logger) async {
        guard case .bearerTokenFile(let path) = configuration.credential else { return }
        while (try? await Task.sleep(for: interval)) != nil {
            do {
                let fresh = try Self.readToken(path)
                let changed = token.withLockedValue { current in
                    defer { current = fresh }
                    return current != fresh
                }
                if changed { logger.info("re-read the upstream token", metadata: ["file": "\(path)"]) }
            } catch {
                logger.warning(
                    "cannot re-read the upstream token; keeping the old one", metadata: ["error": "\(error)"])
            }
        }
    }

    private static func readToken(_ path: String) throws(ConfigurationError) -> String {
        let text = try readTextFile(path, path: path)
        let trimmed = text.trimmingASCIIWhitespace()
        guard !trimmed.isEmpty else { throw ConfigurationError(path, "the token file is empty") }
        return trimmed
    }

    static func isIPAddress(_ host: String) -> Bool {
        host.contains(":") || (!host.isEmpty && host.allSatisfy { $0.isNumber || $0 == "." })
    }
}

extension String {
    func trimmingASCIIWhitespace() -> String {
        var slice = self[...]
        while let first = slice.first, first.isWhitespace { slice = slice.dropFirst() }
        while let last = slice.last, last.isWhitespace { slice = slice.dropLast() }
        return String(slice)
    }
}

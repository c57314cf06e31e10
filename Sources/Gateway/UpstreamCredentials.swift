import Config
import FoundationEssentials
import Logging
import NIOConcurrencyHelpers
import NIOSSL

/// The proxy's own way into the API server: a TLS context (CA, optional client certificate)
/// built once, and the bearer token, re-read from its file while the proxy runs so that a
/// rotated projected service-account token is picked up without a restart.
public final class UpstreamCredentials: Sendable {
    public let configuration: UpstreamConfiguration
    let sslContext: NIOSSLContext
    /// The same, offering HTTP/2 first by ALPN: for the connections that carry long-running
    /// requests as streams (see `MultiplexedUpstream`).
    let multiplexingSSLContext: NIOSSLContext
    /// SNI and certificate name; nil for an IP address, which NIOSSL checks against the peer address.
    let serverHostname: String?
    /// `host:port` for the `Host` header.
    let authority: String
    private let token: NIOLockedValueBox<String?>

    public init(configuration: UpstreamConfiguration) throws(ConfigurationError) {
        self.configuration = configuration
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.minimumTLSVersion = .tlsv12
        tls.applicationProtocols = ["http/1.1"]
        let source = configuration.source == "in-cluster" ? "in-cluster CA" : configuration.source
        if let pem = configuration.certificateAuthorityPEM {
            do {
                tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMBytes(Array(pem.utf8)))
            } catch {
                throw ConfigurationError(source, "the API server's certificate authority is not valid PEM: \(error)")
            }
        }
        if configuration.insecureSkipTLSVerify { tls.certificateVerification = .none }
        var initialToken: String?
        switch configuration.credential {
        case .clientCertificate(let certificatePEM, let keyPEM):
            do {
                tls.certificateChain = try NIOSSLCertificate.fromPEMBytes(Array(certificatePEM.utf8)).map {
                    .certificate($0)
                }
                tls.privateKey = .privateKey(try NIOSSLPrivateKey(bytes: Array(keyPEM.utf8), format: .pem))
            } catch {
                throw ConfigurationError(source, "the client certificate or key is not valid PEM: \(error)")
            }
        case .bearerToken(let value):
            initialToken = value
        case .bearerTokenFile(let path):
            initialToken = try Self.readToken(path)
        case .none:
            break
        }
        do {
            self.sslContext = try NIOSSLContext(configuration: tls)
            tls.applicationProtocols = ["h2", "http/1.1"]
            self.multiplexingSSLContext = try NIOSSLContext(configuration: tls)
        } catch {
            throw ConfigurationError(source, "cannot set up TLS to the API server: \(error)")
        }
        let hostname = configuration.tlsServerName ?? configuration.host
        self.serverHostname = Self.isIPAddress(hostname) ? nil : hostname
        self.authority =
            configuration.host.contains(":")
            ? "[\(configuration.host)]:\(configuration.port)" : "\(configuration.host):\(configuration.port)"
        self.token = NIOLockedValueBox(initialToken)
    }

    /// The `Authorization` value for upstream requests, or nil when the proxy uses a client certificate.
    var authorization: String? {
        token.withLockedValue { $0.map { "Bearer " + $0 } }
    }

    /// Re-reads the token file every `interval` until cancelled; a failed read keeps the old token.
    public func runTokenRefresh(every interval: Duration = .seconds(30), logger: Logger) async {
        guard case .bearerTokenFile(let path) = configuration.credential else { return }
        while !Task.isCancelled {
            try? await Task.sleep(for: interval)
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

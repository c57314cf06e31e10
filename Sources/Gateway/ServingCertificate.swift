import Config
import NIOSSL

/// The TLS context of the proxy listener, made from the configured certificate and key files.
public enum ServingCertificate {
    /// Loads `tls` into a server context: TLS 1.2 or later, BoringSSL's modern cipher suites,
    /// ALPN `http/1.1`. Errors name the file at fault.
    public static func makeContext(_ tls: ServingTLS) throws(ConfigurationError) -> NIOSSLContext {
        let chain: [NIOSSLCertificate]
        do {
            chain = try NIOSSLCertificate.fromPEMFile(tls.certificateFile)
        } catch {
            throw ConfigurationError(
                "--tls-cert-file", "\"\(tls.certificateFile)\" is not a PEM certificate chain: \(error)")
        }
        guard !chain.isEmpty else {
            throw ConfigurationError("--tls-cert-file", "\"\(tls.certificateFile)\" holds no certificate")
        }
        let key: NIOSSLPrivateKey
        do {
            key = try NIOSSLPrivateKey(file: tls.privateKeyFile, format: .pem)
        } catch {
            throw ConfigurationError(
                "--tls-private-key-file", "\"\(tls.privateKeyFile)\" is not a PEM private key: \(error)")
        }
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
        configuration.minimumTLSVersion = .tlsv12
        configuration.applicationProtocols = ["http/1.1"]
        do {
            return try NIOSSLContext(configuration: configuration)
        } catch {
            throw ConfigurationError(
                "--tls-cert-file",
                "the certificate in \"\(tls.certificateFile)\" and the key in \"\(tls.privateKeyFile)\" do not form a usable pair: \(error)"
            )
        }
    }
}

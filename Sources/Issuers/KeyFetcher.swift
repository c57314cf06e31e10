import AsyncHTTPClient
import Config
import FoundationEssentials
import NIOCore
import NIOHTTP1
import NIOSSL

/// Fetches an issuer's discovery document and JWKS over HTTPS, trusting the issuer's own CA
/// bundle when it has one. Owns an `HTTPClient`, which `shutdown()` must release.
final class KeyFetcher: Sendable {
    /// The largest discovery document or JWKS accepted.
    static let maximumDocumentSize = 1 << 20

    private let configuration: IssuerConfiguration
    private let client: HTTPClient
    private let egress: EgressProxy
    /// Through the egress proxy, when `HTTPS_PROXY` names one; fetches that `NO_PROXY` (or
    /// loopback) exempts use `client`.
    private let proxiedClient: HTTPClient?

    /// The TLS settings for fetching from the issuer: its own CA bundle when it has one. Fails when
    /// the bundle does not parse; checked before any `HTTPClient` exists, so a failed setup
    /// leaves nothing to shut down.
    static func tlsConfiguration(for configuration: IssuerConfiguration) throws(IssuerSetupError) -> TLSConfiguration {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.minimumTLSVersion = .tlsv12
        if let pem = configuration.certificateAuthorityPEM {
            do {
                tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMBytes(Array(pem.utf8)))
            } catch {
                throw IssuerSetupError(
                    issuer: configuration.url, message: "its certificate authority is not a valid PEM bundle: \(error)")
            }
        }
        return tls
    }

    init(configuration: IssuerConfiguration, tls: TLSConfiguration, egress: EgressProxy = .environment) {
        self.configuration = configuration
        self.egress = egress
        var clientConfiguration = HTTPClient.Configuration(
            tlsConfiguration: tls,
            redirectConfiguration: .follow(max: 3, allowCycles: false),
            timeout: .init(connect: .seconds(5), read: .seconds(10)))
        clientConfiguration.decompression = .disabled
        self.client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: clientConfiguration)
        if case .success(let server) = egress.server {
            clientConfiguration.proxy = .server(
                host: server.host, port: server.port,
                authorization: server.user.map { .basic(username: $0, password: server.password) })
            self.proxiedClient = HTTPClient(
                eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: clientConfiguration)
        } else {
            self.proxiedClient = nil
        }
    }

    var discoveryURL: String {
        configuration.discoveryURL ?? Self.trimmingTrailingSlash(configuration.url)
            + "/.well-known/openid-configuration"
    }

    /// Discovery, then the JWKS it names; the document's `issuer` must equal the configured URL.
    func fetchKeys() async throws(KeyFetchError) -> (KeySet, skipped: [String]) {
        struct Discovery: Decodable {
            var issuer: String?
            var jwksURI: String?
            enum CodingKeys: String, CodingKey {
                case issuer
                case jwksURI = "jwks_uri"
            }
        }
        let discoveryBytes = try await get(discoveryURL, what: "discovery document")
        guard let discovery = try? JSONDecoder().decode(Discovery.self, from: Data(discoveryBytes)) else {
            throw KeyFetchError("discovery document at \(discoveryURL) is not valid JSON")
        }
        guard discovery.issuer == configuration.url else {
            throw KeyFetchError(
                "discovery document at \(discoveryURL) names issuer \"\(discovery.issuer ?? "")\", "
                    + "not the configured \"\(configuration.url)\" (they must match exactly)")
        }
        guard let jwksURI = discovery.jwksURI, !jwksURI.isEmpty else {
            throw KeyFetchError("discovery document at \(discoveryURL) has no jwks_uri")
        }
        let jwksBytes = try await get(jwksURI, what: "JWKS")
        do {
            return try KeySet.parse(jwks: jwksBytes)
        } catch {
            throw KeyFetchError("JWKS at \(jwksURI): \(error.message)")
        }
    }

    private func get(_ url: String, what: String) async throws(KeyFetchError) -> [UInt8] {
        do {
            var request = HTTPClientRequest(url: url)
            request.headers.add(name: "Accept", value: "application/json")
            var client = self.client
            switch egress.server(for: url) {
            case .failure(let error): throw error
            case .success: client = proxiedClient ?? client
            case nil: break
            }
            let response = try await client.execute(request, timeout: .seconds(15))
            guard response.status == .ok else {
                throw KeyFetchError("\(what) at \(url) answered HTTP \(response.status.code)")
            }
            let body = try await response.body.collect(upTo: Self.maximumDocumentSize)
            return Array(body.readableBytesView)
        } catch let error as KeyFetchError {
            throw error
        } catch {
            throw KeyFetchError("cannot fetch \(what) at \(url): \(error)")
        }
    }

    func shutdown() async {
        try? await client.shutdown()
        try? await proxiedClient?.shutdown()
    }

    static func trimmingTrailingSlash(_ url: String) -> String {
        url.hasSuffix("/") ? String(url.dropLast()) : url
    }
}

/// Why an issuer's keys could not be fetched; kept as the issuer's last error for `/readyz`.
struct KeyFetchError: Error, Sendable, Equatable, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// An issuer that cannot even be set up (its CA bundle does not parse).
public struct IssuerSetupError: Error, Sendable, CustomStringConvertible {
    public var issuer: String
    public var message: String
    public var description: String { "issuer \(issuer): \(message)" }
}

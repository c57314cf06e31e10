import AsyncHTTPClient
import Config
import Foundation
import Gateway
import Issuers
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import Testbed

/// A running proxy in front of a stand-in issuer and a stand-in API server, all real HTTPS on
/// loopback, for one test. `ProxyHarness.run` builds it, waits until the issuer's keys are
/// loaded, runs the test, and tears everything down.
struct ProxyHarness {
    let issuer: StandInIssuer
    let api: StandInAPIServer
    let issuers: IssuerSet
    let server: ProxyServer
    let client: HTTPClient
    let port: Int
    let current: CurrentIssuers
    let health: HealthEndpoints
    let metrics: ProxyMetrics
    let logs: LogCapture
    /// The metrics listener's port, when `Options.metricsListener` started one.
    let metricsPort: Int?
    let metricsServer: MetricsServer?
    let reloadStatus: CurrentReloadStatus
    /// The HTTPS listener's certificate files and their CA, when the harness serves TLS.
    let serving: ServingFiles?
    /// The proxy's credentials for the API server and its connections there.
    let credentials: UpstreamCredentials
    let pool: UpstreamConnectionPool
    /// The proxy's own event loops, when `Options.singleEventLoop` asked for them.
    let ownGroup: MultiThreadedEventLoopGroup?
    /// Between the proxy and the API server, with `Options.upstreamRelay`.
    let relay: TCPRelay?

    var baseURL: String { serving == nil ? "http://127.0.0.1:\(port)" : "https://127.0.0.1:\(port)" }

    /// A serving certificate on disk, its store, and the CA that signed it.
    struct ServingFiles {
        let directory: String
        let authority: TestCertificateAuthority
        let store: ServingCertificateStore

        /// Writes a new certificate, from a new CA, over the files (as cert-manager renewing would).
        func rotate() throws -> TestCertificateAuthority {
            let authority = try TestCertificateAuthority(commonName: "rotated proxy CA")
            try Self.write(authority.issueServerCertificate(), to: directory)
            return authority
        }

        static func write(_ identity: ServerIdentity, to directory: String) throws {
            try identity.certificatePEM.write(toFile: directory + "/tls.crt", atomically: true, encoding: .utf8)
            try identity.privateKeyPEM.write(toFile: directory + "/tls.key", atomically: true, encoding: .utf8)
        }
    }

    struct Options {
        /// Serving HTTPS, otherwise the defaults.
        static var servingTLS: Options {
            var options = Options()
            options.serveTLS = true
            return options
        }

        var mapIssuer: @Sendable (IssuerConfiguration) -> IssuerConfiguration = { $0 }
        var allowReservedIdentities = false
        var responseHeadTimeout: TimeAmount = .seconds(30)
        var requestHeadTimeout: TimeAmount = .seconds(60)
        var idleTimeout: TimeAmount = .seconds(90)
        /// The listener's host; "" listens on every address, as the default `:8080` does.
        var listenHost = "127.0.0.1"
        var maximumConnections = 10_000
        var upgradeIdleTimeout: TimeAmount?
        /// Serve HTTPS (h2 and http/1.1 by ALPN) with a certificate made for the test.
        var serveTLS = false
        /// The stand-in API server offers HTTP/2, as kube-apiserver does.
        var upstreamHTTP2 = false
        var upstreamHTTP2MaximumStreams = 100
        /// The upstream pool's connect timeout (which also bounds an HTTP/2 handshake).
        var upstreamConnectTimeout = TimeAmount.seconds(10)
        /// Upstream port override (for an API server that is not there).
        var upstreamPort: Int?
        var upstreamCAPEM: String?
        /// The proxy reaches the API server through a `TCPRelay` (`relay`), which can hold its
        /// connections while they open.
        var upstreamRelay = false
        /// The proxy's credential for the API server; nil: the stand-in's bearer token.
        var upstreamCredential: UpstreamCredential?
        /// The stand-in API server requires a client certificate signed by this authority.
        var upstreamClientCertificateAuthority: TestCertificateAuthority?
        var waitForKeys = true
        /// The proxy (and the test's client) on one event loop of their own: every client
        /// connection then shares one upstream pool.
        var singleEventLoop = false
        var metricsListener = false
        var readiness = ReadinessPolicy.all
        /// More issuers, each with its own stand-in (named by the configuration).
        var extraIssuers: [StandInIssuer] = []
        var issuerAvailableAtStart = true
        var timing = KeyRefreshTiming(
            initialBackoff: .milliseconds(100), maximumBackoff: .milliseconds(200), refreshInterval: .seconds(600),
            minimumRefetchInterval: .milliseconds(300))
    }

    static func run<T>(
        _ options: Options = Options(), _ body: (ProxyHarness) async throws -> T
    ) async throws -> T {
        let issuer = try await StandInIssuer()
        let api = try await StandInAPIServer(
            http2: options.upstreamHTTP2, http2MaximumStreams: options.upstreamHTTP2MaximumStreams,
            clientCertificateAuthority: options.upstreamClientCertificateAuthority)
        issuer.setAvailable(options.issuerAvailableAtStart)
        let issuerConfiguration = options.mapIssuer(
            IssuerConfiguration(
                url: issuer.url, audiences: ["kubernetes"],
                certificateAuthorityPEM: issuer.certificateAuthority.certificatePEM))
        let extraConfigurations = options.extraIssuers.enumerated().map { index, extra in
            options.mapIssuer(
                IssuerConfiguration(
                    url: extra.url, audiences: ["kubernetes"],
                    certificateAuthorityPEM: extra.certificateAuthority.certificatePEM, name: "extra-\(index)"))
        }
        let configuration = ProxyConfiguration(
            listenAddress: ListenAddress(host: options.listenHost, port: 0), metricsAddress: nil,
            issuers: [issuerConfiguration] + extraConfigurations,
            allowReservedIdentities: options.allowReservedIdentities, readiness: options.readiness)
        let logs = LogCapture()
        let logger = logs.logger(level: .debug)
        let issuers = try IssuerSet(configuration: configuration, timing: options.timing, logger: logger)
        let relay = options.upstreamRelay ? try await TCPRelay.start(to: api.port) : nil
        let upstream = UpstreamConfiguration(
            host: "127.0.0.1", port: options.upstreamPort ?? relay?.port ?? api.port,
            certificateAuthorityPEM: options.upstreamCAPEM ?? api.certificateAuthority.certificatePEM,
            credential: options.upstreamCredential ?? .bearerToken(api.expectedToken), source: "test")
        let credentials = try UpstreamCredentials(configuration: upstream)
        let ownGroup = options.singleEventLoop ? MultiThreadedEventLoopGroup(numberOfThreads: 1) : nil
        let group = ownGroup ?? MultiThreadedEventLoopGroup.singleton
        let pool = UpstreamConnectionPool(
            group: group, credentials: credentials, connectTimeout: options.upstreamConnectTimeout)
        let current = CurrentIssuers(issuers)
        let health = HealthEndpoints(issuers: current)
        let metrics = ProxyMetrics()
        let reloadStatus = CurrentReloadStatus()
        var gateway = GatewayContext(
            issuers: current,
            pool: pool, health: health,
            logger: logger, responseHeadTimeout: options.responseHeadTimeout,
            requestHeadTimeout: options.requestHeadTimeout, maximumConnections: options.maximumConnections,
            reloadStatus: reloadStatus, metrics: metrics)
        gateway.upgradeIdleTimeout = options.upgradeIdleTimeout
        gateway.idleTimeout = options.idleTimeout
        var serving: ServingFiles?
        var clientConfiguration = HTTPClient.Configuration()
        if options.serveTLS {
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("kip-tls-\(UUID())").path
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            let authority = try TestCertificateAuthority(commonName: "proxy test CA")
            try ServingFiles.write(authority.issueServerCertificate(), to: directory)
            let store = try ServingCertificateStore(
                ServingTLS(certificateFile: directory + "/tls.crt", privateKeyFile: directory + "/tls.key"))
            serving = ServingFiles(directory: directory, authority: authority, store: store)
            var tls = TLSConfiguration.makeClientConfiguration()
            tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMBytes(Array(authority.certificatePEM.utf8)))
            clientConfiguration.tlsConfiguration = tls
        }
        let server = try await ProxyServer.start(
            address: configuration.listenAddress, group: group, gateway: gateway, tls: serving?.store)
        var metricsServer: MetricsServer?
        if options.metricsListener {
            metricsServer = try await MetricsServer.start(
                address: ListenAddress(host: "127.0.0.1", port: 0), group: group, gateway: gateway)
        }
        let client = HTTPClient(eventLoopGroup: group, configuration: clientConfiguration)
        let harness = ProxyHarness(
            issuer: issuer, api: api, issuers: issuers, server: server, client: client,
            port: server.localAddress?.port ?? 0, current: current, health: health, metrics: metrics, logs: logs,
            metricsPort: metricsServer?.localAddress?.port, metricsServer: metricsServer, reloadStatus: reloadStatus,
            serving: serving, credentials: credentials, pool: pool, ownGroup: ownGroup, relay: relay)
        do {
            if options.waitForKeys { try await harness.waitUntilReady() }
            let result = try await body(harness)
            await harness.tearDown()
            return result
        } catch {
            await harness.tearDown()
            throw error
        }
    }

    func waitUntilReady(timeout: Duration = .seconds(30)) async throws {
        let deadline = ContinuousClock.now + timeout
        while !issuers.issuers.allSatisfy({ $0.status.isReady }) {
            guard ContinuousClock.now < deadline else { throw TestbedError("the issuer's keys never loaded") }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    private func tearDown() async {
        try? await client.shutdown()
        await server.stopAccepting()
        await metricsServer?.stop()
        await current.current.shutdown()
        await issuers.shutdown()
        await relay?.stop()
        await api.stop()
        await issuer.stop()
        if let serving { try? FileManager.default.removeItem(atPath: serving.directory) }
        try? await ownGroup?.shutdownGracefully()
    }

    /// A GET on the metrics listener.
    func getMetricsListener(_ path: String) async throws -> (status: Int, body: String) {
        let response = try await client.execute(
            HTTPClientRequest(url: "http://127.0.0.1:\(metricsPort ?? 0)\(path)"), timeout: .seconds(30))
        let body = try await response.body.collect(upTo: 16 << 20)
        return (Int(response.status.code), String(buffer: body))
    }

    /// A GET through the proxy with `token` (nil: no Authorization header).
    func get(_ path: String, token: String?, headers: [(String, String)] = []) async throws -> (
        status: Int, body: String, headers: [(String, String)]
    ) {
        var request = HTTPClientRequest(url: baseURL + path)
        if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        let response = try await client.execute(request, timeout: .seconds(30))
        let body = try await response.body.collect(upTo: 64 << 20)
        return (Int(response.status.code), String(buffer: body), response.headers.map { ($0.name, $0.value) })
    }
}

/// The Status JSON kube-apiserver sends for a 401.
let unauthorizedStatus =
    #"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401}"#

extension ProxyHarness {
    /// Starts a GET whose body streams (a watch) over HTTP/2 and returns the body's first chunk
    /// and the rest, to be read as the test wants.
    func openHTTP2Stream(_ path: String, token: String) async throws -> (
        first: ByteBuffer, rest: HTTPClientResponse.Body.AsyncIterator
    ) {
        var request = HTTPClientRequest(url: baseURL + path)
        request.headers.add(name: "Authorization", value: "Bearer \(token)")
        let response = try await client.execute(request, timeout: .seconds(60))
        guard response.version == .http2 else { throw TestbedError("\(path) was answered over \(response.version)") }
        var body = response.body.makeAsyncIterator()
        guard let first = try await body.next() else { throw TestbedError("\(path) ended at once") }
        return (first, body)
    }
}

import Config
import Gateway
import Issuers
import Logging
import NIOPosix
import NIOSSL
import ServiceLifecycle
import UnixSignals

/// Wires the configuration into running services and runs them until SIGTERM/SIGINT.
enum Server {
    static func run(
        configuration: ProxyConfiguration, upstream: UpstreamConfiguration, gracePeriod: Duration, logger: Logger
    ) async throws {
        let credentials: UpstreamCredentials
        do {
            credentials = try UpstreamCredentials(configuration: upstream)
        } catch {
            throw FatalError(error.description)
        }
        let issuerSet: IssuerSet
        do {
            issuerSet = try IssuerSet(configuration: configuration, logger: logger)
        } catch {
            throw FatalError(error.description)
        }
        var servingContext: NIOSSLContext?
        if let tls = configuration.tls {
            do {
                servingContext = try ServingCertificate.makeContext(tls)
            } catch {
                await issuerSet.shutdown()
                throw FatalError(error.description)
            }
        }
        let group = MultiThreadedEventLoopGroup.singleton
        let issuers = CurrentIssuers(issuerSet)
        let health = HealthEndpoints(issuers: issuers, readiness: configuration.readiness)
        let pool = UpstreamConnectionPool(group: group, credentials: credentials)
        let gateway = GatewayContext(issuers: issuers, pool: pool, health: health, logger: logger)
        let server: ProxyServer
        do {
            server = try await ProxyServer.start(
                address: configuration.listenAddress, group: group, gateway: gateway, tls: servingContext)
        } catch {
            await issuerSet.shutdown()
            throw FatalError("--listen-addr \(configuration.listenAddress): cannot listen: \(error)")
        }
        logger.info(
            "serving",
            metadata: [
                "listen": "\(server.localAddress.map { "\($0)" } ?? "\(configuration.listenAddress)")",
                "tls": "\(configuration.tls == nil ? "off" : "on")",
                "upstream": "\(upstream.serverURL) (\(upstream.source))",
                "issuers": "\(configuration.issuers.map(\.url).joined(separator: ","))",
                "version": "\(ProxyVersion.current)",
            ])

        var services: [any Service] = [
            ProxyService(server: server, health: health, pool: pool, drainDeadline: gracePeriod, logger: logger),
            ClosureService { await cancelWhenGracefulShutdown { await issuers.current.runKeyRefresh() } },
        ]
        if case .bearerTokenFile = upstream.credential {
            services.append(
                ClosureService {
                    await cancelWhenGracefulShutdown { await credentials.runTokenRefresh(logger: logger) }
                })
        }
        var groupLogger = logger
        groupLogger.logLevel = .notice
        let serviceGroup = ServiceGroup(
            services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: groupLogger)
        do {
            try await serviceGroup.run()
        } catch {
            await issuerSet.shutdown()
            throw error
        }
        await issuerSet.shutdown()
        logger.info("stopped")
    }
}

import Config
import Gateway
import Issuers
import Logging
import Metrics
import NIOCore
import NIOPosix
import NIOSSL
import Prometheus
import ServiceLifecycle
import UnixSignals

/// Wires the configuration into running services and runs them until SIGTERM/SIGINT.
enum Server {
    static func run(
        loaded: LoadedConfiguration, flags: ProxyFlags, upstream: UpstreamConfiguration, gracePeriod: Duration,
        upgradeIdleTimeout: Duration?, logger: Logger, logFormat: LogFormat
    ) async throws {
        let configuration = loaded.configuration
        let credentials: UpstreamCredentials
        do {
            credentials = try UpstreamCredentials(configuration: upstream)
        } catch {
            throw FatalError(error.description)
        }
        // Trap SIGHUP before anything serves, so an early reload request never kills the process.
        let hangups = await UnixSignalsSequence(trapping: .sighup)
        let timing = KeyRefreshTiming()
        let issuerSet: IssuerSet
        do {
            issuerSet = try IssuerSet(configuration: configuration, timing: timing, logger: logger)
        } catch {
            throw FatalError(error.description)
        }
        var servingCertificate: ServingCertificateStore?
        if let tls = configuration.tls {
            do {
                servingCertificate = try ServingCertificateStore(tls)
            } catch {
                await issuerSet.shutdown()
                throw FatalError(error.description)
            }
        }
        let group = MultiThreadedEventLoopGroup.singleton
        let issuers = CurrentIssuers(issuerSet)
        let reloadStatus = CurrentReloadStatus()
        reloadStatus.recordInitialLoad(sha256: loaded.file?.sha256)
        let health = HealthEndpoints(issuers: issuers)
        let pool = UpstreamConnectionPool(group: group, credentials: credentials)
        let metrics = ProxyMetrics()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: metrics.registry))
        var gateway = GatewayContext(
            issuers: issuers, pool: pool, health: health, logger: logger, reloadStatus: reloadStatus,
            metrics: metrics)
        gateway.upgradeIdleTimeout = upgradeIdleTimeout.map { .nanoseconds(Int64($0 / .nanoseconds(1))) }
        gateway.accessLog = AccessLogLines(format: logFormat, sink: .standardError)
        let server: ProxyServer
        do {
            server = try await ProxyServer.start(
                address: configuration.listenAddress, group: group, gateway: gateway, tls: servingCertificate)
        } catch {
            await issuerSet.shutdown()
            throw FatalError("--listen-addr \(configuration.listenAddress): cannot listen: \(error)")
        }
        var metricsServer: MetricsServer?
        if let metricsAddress = configuration.metricsAddress {
            do {
                metricsServer = try await MetricsServer.start(address: metricsAddress, group: group, gateway: gateway)
            } catch {
                await server.stopAccepting()
                await issuerSet.shutdown()
                throw FatalError("--metrics-addr \(metricsAddress): cannot listen: \(error)")
            }
        }
        logger.info(
            "serving",
            metadata: [
                "listen": "\(server.localAddress.map { "\($0)" } ?? "\(configuration.listenAddress)")",
                "metrics": "\(metricsServer?.localAddress.map { "\($0)" } ?? "off")",
                "tls": "\(configuration.tls == nil ? "off" : "on")",
                "upstream": "\(upstream.serverURL) (\(upstream.source))",
                "issuers": "\(configuration.issuers.map(\.url).joined(separator: ","))",
                "config": "\(loaded.file.map { "\($0.path) sha256 \($0.sha256)" } ?? "flags only")",
                "version": "\(ProxyVersion.current)",
            ])
        logger.info("effective configuration", metadata: ["configuration": "\(configuration.effectiveYAML)"])

        let reloader = ConfigurationReloader(
            flags: flags, issuers: issuers, status: reloadStatus, loadedSHA256: loaded.file?.sha256, timing: timing,
            logger: logger)
        // The service group shuts services down in reverse order: the metrics listener, first
        // here, closes last, after the proxy listener has drained.
        var services: [any Service] = metricsServer.map { [MetricsService(server: $0)] } ?? []
        services += [
            ProxyService(server: server, health: health, pool: pool, drainDeadline: gracePeriod, logger: logger),
            ClosureService { await cancelWhenGracefulShutdown { await reloader.run(hangups: hangups) } },
        ]
        if let servingCertificate {
            services.append(
                ClosureService {
                    await cancelWhenGracefulShutdown { await servingCertificate.runReloads(logger: logger) }
                })
        }
        if credentials.hasClientCertificateFiles {
            services.append(
                ClosureService {
                    await cancelWhenGracefulShutdown {
                        await credentials.runClientCertificateRefresh(logger: logger) { await pool.retireConnections() }
                    }
                })
        }
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
            await issuers.current.shutdown()
            throw error
        }
        await issuers.current.shutdown()
        // The event loops' last lines (the drained requests' access log) come before this one.
        LogSink.standardError.flush()
        logger.info("stopped")
    }
}

import Logging
import ServiceLifecycle

/// Runs the proxy listener until a graceful shutdown (SIGTERM/SIGINT): then `/readyz` turns
/// failing at once, the listener stops accepting, and idle upstream connections are closed.
public struct ProxyService: Service {
    private let server: ProxyServer
    private let health: HealthEndpoints
    private let pool: UpstreamConnectionPool
    private let logger: Logger

    public init(server: ProxyServer, health: HealthEndpoints, pool: UpstreamConnectionPool, logger: Logger) {
        self.server = server
        self.health = health
        self.pool = pool
        self.logger = logger
    }

    public func run() async throws {
        try? await gracefulShutdown()
        health.beginShutdown()
        logger.info("shutting down: no longer accepting connections")
        await server.stopAccepting()
        pool.closeIdleConnections()
    }
}

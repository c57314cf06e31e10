import Logging
import ServiceLifecycle

/// Runs the proxy listener until a graceful shutdown (SIGTERM/SIGINT): then `/readyz` turns
/// failing at once, the listener stops accepting, requests in flight and upgraded sessions get
/// up to `drainDeadline` to finish; those still open then are closed, each request on them
/// logged as one whose client went away, and the service returns.
public struct ProxyService: Service {
    private let server: ProxyServer
    private let health: HealthEndpoints
    private let pool: UpstreamConnectionPool
    private let drainDeadline: Duration
    private let logger: Logger

    public init(
        server: ProxyServer, health: HealthEndpoints, pool: UpstreamConnectionPool,
        drainDeadline: Duration = .seconds(30),
        logger: Logger
    ) {
        self.server = server
        self.health = health
        self.pool = pool
        self.drainDeadline = drainDeadline
        self.logger = logger
    }

    public func run() async throws {
        try? await gracefulShutdown()
        health.beginShutdown()
        logger.info(
            "shutting down: no longer accepting connections; draining",
            metadata: ["open_connections": "\(server.openConnections)", "deadline": "\(drainDeadline)"])
        let drained = await server.drain(deadline: drainDeadline)
        if drained {
            logger.info("every connection drained")
        } else {
            logger.warning(
                "drain deadline reached; closing the remaining connections",
                metadata: ["open_connections": "\(server.openConnections)"])
            // Closed here rather than by the exit, so that every watch and session cut short
            // gets its access-log line.
            let (count, closed) = await server.closeRemaining(wait: .seconds(2))
            logger.info(
                "closed the remaining connections", metadata: ["connections": "\(count)", "all_closed": "\(closed)"])
        }
        pool.closeIdleConnections()
    }
}

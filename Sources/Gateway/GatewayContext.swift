import Config
import Logging
import NIOCore

/// Everything a client connection needs, shared by all of them.
public struct GatewayContext: Sendable {
    public var issuers: CurrentIssuers
    public var pool: UpstreamConnectionPool
    public var health: HealthEndpoints
    public var logger: Logger
    /// How configuration reloads have gone (for the metrics endpoint).
    public var reloadStatus: CurrentReloadStatus
    /// The metrics requests are counted in (each harness or process has its own registry).
    public var metrics: ProxyMetrics
    /// How long the API server may take to start answering a forwarded request.
    public var responseHeadTimeout: TimeAmount
    /// How long a new client connection may take to send its first request head (or, over
    /// HTTP/2, to open its first stream): slow or silent clients are cut off, and cannot pin
    /// connections forever.
    public var requestHeadTimeout: TimeAmount
    /// How long a client connection may wait for its next request once a response has ended
    /// (HTTP/2: once its last stream has), as kube-apiserver's `IdleTimeout`. Longer than the
    /// 60 s idle timeouts of the load balancers and Ingress controllers that keep connections
    /// to the proxy (AWS ALB, ingress-nginx): at equal timeouts, a balancer reuses a connection
    /// the proxy is closing and answers 502.
    public var idleTimeout: TimeAmount = .seconds(90)
    /// Client connections beyond this many at once are closed as soon as they are accepted.
    public var maximumConnections: Int
    /// An upgraded (spliced) session with no bytes either way for this long is closed; nil (the
    /// default) never closes a session for being quiet.
    public var upgradeIdleTimeout: TimeAmount?
    /// Where access-log lines go; nil logs each as a `request` event through `logger`.
    public var accessLog: (any AccessLogWriter)?

    public init(
        issuers: CurrentIssuers, pool: UpstreamConnectionPool, health: HealthEndpoints, logger: Logger,
        responseHeadTimeout: TimeAmount = .seconds(120), requestHeadTimeout: TimeAmount = .seconds(60),
        maximumConnections: Int = 10_000, reloadStatus: CurrentReloadStatus = CurrentReloadStatus(),
        metrics: ProxyMetrics = ProxyMetrics()
    ) {
        self.metrics = metrics
        self.issuers = issuers
        self.reloadStatus = reloadStatus
        self.pool = pool
        self.health = health
        self.logger = logger
        self.responseHeadTimeout = responseHeadTimeout
        self.requestHeadTimeout = requestHeadTimeout
        self.maximumConnections = maximumConnections
    }
}

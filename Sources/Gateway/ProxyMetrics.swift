import Config
import CoreMetrics
import FoundationEssentials
import Issuers
import Metrics
import NIOConcurrencyHelpers
import NIOCore
import Prometheus

/// The proxy's metrics, made through swift-metrics on a Prometheus registry of their own, so
/// each instance (one per process, one per test) counts alone and nothing depends on the
/// global `MetricsSystem` bootstrap.
///
/// No label carries a user name, a group, a token or any other unbounded value: methods come
/// from a fixed set (else `OTHER`), codes are three-digit HTTP codes, issuers are configured
/// names (else `unknown`), reasons and kinds are fixed labels of typed errors.
public final class ProxyMetrics: Sendable {
    /// Every metric name starts with this.
    public static let prefix = "kube_impersonate_proxy_"

    /// The methods that get a label of their own; any other is counted as `OTHER`.
    static let knownMethods: Set<String> = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]

    public let registry: PrometheusCollectorRegistry
    private let factory: PrometheusMetricsFactory
    private let inFlight: CoreMetrics.Meter
    private let upgradedOpen: CoreMetrics.Meter
    private let verification: CoreMetrics.Timer

    /// What was last read from the snapshot sources (reload status, key sources), to turn
    /// their running totals into counter increments at each scrape.
    private struct Baselines {
        var reloadSuccesses = 0
        var reloadFailures = 0
        var configInfo: (sha256: String, gauge: CoreMetrics.Gauge)?
        var keySources: [ObjectIdentifier: (name: String, counts: KeyFetchCounts)] = [:]
        /// Per-issuer gauges, by issuer name: dropped when a reload removes the issuer.
        var issuerGauges: [String: [CoreMetrics.Gauge]] = [:]
        /// The issuer set whose token cache was last read, and its totals then.
        var tokenCache: (set: ObjectIdentifier, hits: Int, misses: Int)?
    }
    private let baselines = NIOLockedValueBox(Baselines())

    /// Per-request metric handles, made once per label set: making a handle looks it up in the
    /// registry (a lock, sorted labels, several allocations), which is too much for every request.
    private let requestCounters = MetricHandles<RequestLabels, CoreMetrics.Counter>()
    private let requestTimers = MetricHandles<String, CoreMetrics.Timer>()
    private let authenticationCounters = MetricHandles<AuthenticationLabels, CoreMetrics.Counter>()
    private let upstreamErrorCounters = MetricHandles<String, CoreMetrics.Counter>()

    private struct RequestLabels: Hashable, Sendable {
        var method: String
        var code: Int
    }

    private struct AuthenticationLabels: Hashable, Sendable {
        var issuer: String
        var reason: String?
    }

    public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        self.registry = registry
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.durationHistogramBuckets[Self.prefix + "token_verification_duration_seconds"] = [
            .microseconds(50), .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1),
            .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(50), .milliseconds(250),
            .seconds(1), .seconds(5),
        ]
        self.factory = factory
        self.inFlight = CoreMetrics.Meter(label: Self.prefix + "requests_in_flight", factory: factory)
        self.upgradedOpen = CoreMetrics.Meter(label: Self.prefix + "upgraded_connections_open", factory: factory)
        self.verification = CoreMetrics.Timer(
            label: Self.prefix + "token_verification_duration_seconds", factory: factory)
        inFlight.set(0)
        upgradedOpen.set(0)
        for result in ["hit", "miss"] {
            CoreMetrics.Counter(
                label: Self.prefix + "token_cache_requests_total", dimensions: [("result", result)], factory: factory
            )
            .increment(by: 0)
        }
        for result in ["success", "failure"] {
            CoreMetrics.Counter(
                label: Self.prefix + "config_reloads_total", dimensions: [("result", result)], factory: factory
            )
            .increment(by: 0)
        }
    }

    /// The method as a label: one of a fixed set, else `OTHER`.
    static func methodLabel(_ method: String) -> String {
        knownMethods.contains(method) ? method : "OTHER"
    }

    /// The status code as a label: a three-digit HTTP code, or `0` when no response was sent.
    static func codeLabel(_ code: Int?) -> String {
        guard let code, (100...599).contains(code) else { return "0" }
        return String(code)
    }

    /// The issuer as a label: a name the configuration `configured` gives, else `unknown`.
    static func issuerLabel(_ name: String?, configured: IssuerSet) -> String {
        guard let name, configured.issuers.contains(where: { $0.configuration.name == name }) else {
            return "unknown"
        }
        return name
    }

    // MARK: Requests

    func requestStarted() {
        inFlight.increment()
    }

    /// A proxied request is over (answered, failed, or abandoned by the client).
    func requestFinished(method: String, code: Int?, duration: Duration) {
        inFlight.decrement()
        let method = Self.methodLabel(method)
        let code = code.flatMap { (100...599).contains($0) ? $0 : nil } ?? 0
        requestCounters.handle(for: RequestLabels(method: method, code: code)) { [factory] labels in
            CoreMetrics.Counter(
                label: Self.prefix + "requests_total",
                dimensions: [("code", Self.codeLabel(labels.code)), ("method", labels.method)], factory: factory)
        }.increment()
        requestTimers.handle(for: method) { [factory] method in
            CoreMetrics.Timer(
                label: Self.prefix + "request_duration_seconds", dimensions: [("method", method)], factory: factory)
        }.record(duration: duration)
    }

    /// One authentication outcome: `reason` is nil for success, else a `TokenRejection.reason`
    /// or `no_token`.
    func recordAuthentication(issuer: String?, reason: String?, in issuers: IssuerSet) {
        let labels = AuthenticationLabels(issuer: Self.issuerLabel(issuer, configured: issuers), reason: reason)
        authenticationCounters.handle(for: labels) { [factory] labels in
            CoreMetrics.Counter(
                label: Self.prefix + "authentication_attempts_total",
                dimensions: [
                    ("issuer", labels.issuer), ("result", labels.reason == nil ? "success" : "failure"),
                    ("reason", labels.reason ?? "none"),
                ],
                factory: factory)
        }.increment()
    }

    /// How long judging one token took (the key refetch included, when one was needed).
    func recordVerification(duration: Duration) {
        verification.record(duration: duration)
    }

    /// Token cache lookups, `count` at a time.
    public func recordTokenCacheLookups(hit: Bool, count: Int = 1) {
        guard count > 0 else { return }
        CoreMetrics.Counter(
            label: Self.prefix + "token_cache_requests_total", dimensions: [("result", hit ? "hit" : "miss")],
            factory: factory
        ).increment(by: count)
    }

    func recordUpstreamError(kind: String) {
        upstreamErrorCounters.handle(for: kind) { [factory] kind in
            CoreMetrics.Counter(
                label: Self.prefix + "upstream_errors_total", dimensions: [("kind", kind)], factory: factory)
        }.increment()
    }

    /// An upgraded (spliced) connection opened; it counts as open until `closed` completes.
    func upgradeOpened(until closed: EventLoopFuture<Void>) {
        upgradedOpen.increment()
        closed.whenComplete { _ in self.upgradedOpen.decrement() }
    }

    // MARK: Snapshot sources

    /// Brings the metrics read from running totals up to date: configuration reloads and the
    /// key fetches of the current issuers. Called before each scrape.
    public func update(reloads: ReloadStatus, issuers: IssuerSet) {
        baselines.withLockedValue { baselines in
            let successes = reloads.successes - baselines.reloadSuccesses
            let failures = reloads.failures - baselines.reloadFailures
            if successes > 0 {
                CoreMetrics.Counter(
                    label: Self.prefix + "config_reloads_total", dimensions: [("result", "success")], factory: factory
                ).increment(by: successes)
            }
            if failures > 0 {
                CoreMetrics.Counter(
                    label: Self.prefix + "config_reloads_total", dimensions: [("result", "failure")], factory: factory
                ).increment(by: failures)
            }
            baselines.reloadSuccesses = reloads.successes
            baselines.reloadFailures = reloads.failures
            if let lastSuccess = reloads.lastSuccess {
                CoreMetrics.Gauge(label: Self.prefix + "config_last_reload_success_timestamp_seconds", factory: factory)
                    .record(lastSuccess.timeIntervalSince1970)
            }
            let sha256 = reloads.configurationSHA256 ?? "none"
            if baselines.configInfo?.sha256 != sha256 {
                if let previous = baselines.configInfo { previous.gauge.destroy() }
                let gauge = CoreMetrics.Gauge(
                    label: Self.prefix + "config_info", dimensions: [("sha256", sha256)], factory: factory)
                gauge.record(1)
                baselines.configInfo = (sha256, gauge)
            }

            var seen: [ObjectIdentifier: (name: String, counts: KeyFetchCounts)] = [:]
            var issuerGauges: [String: [CoreMetrics.Gauge]] = [:]
            for issuer in issuers.issuers {
                let name = issuer.configuration.name
                let counts = issuer.fetchCounts
                let before = baselines.keySources[issuer.keySourceID]?.counts ?? KeyFetchCounts()
                for (result, delta) in [
                    ("success", counts.successes - before.successes), ("failure", counts.failures - before.failures),
                ] {
                    let counter = CoreMetrics.Counter(
                        label: Self.prefix + "key_fetches_total", dimensions: [("issuer", name), ("result", result)],
                        factory: factory)
                    counter.increment(by: max(delta, 0))
                }
                let ready = CoreMetrics.Gauge(
                    label: Self.prefix + "issuer_ready", dimensions: [("issuer", name)], factory: factory)
                ready.record(issuer.status.isReady ? 1 : 0)
                var gauges = [ready]
                if let lastSuccess = counts.lastSuccess {
                    let gauge = CoreMetrics.Gauge(
                        label: Self.prefix + "key_fetch_last_success_timestamp_seconds",
                        dimensions: [("issuer", name)], factory: factory)
                    gauge.record(lastSuccess.timeIntervalSince1970)
                    gauges.append(gauge)
                }
                issuerGauges[name] = gauges
                seen[issuer.keySourceID] = (name, counts)
            }
            baselines.keySources = seen

            // The cache's own running totals; a reload brings a new, empty cache.
            let setID = ObjectIdentifier(issuers)
            if baselines.tokenCache?.set != setID { baselines.tokenCache = (setID, 0, 0) }
            if let cache = issuers.tokenCache, let before = baselines.tokenCache {
                let hits = cache.hits
                let misses = cache.misses
                recordTokenCacheLookups(hit: true, count: hits - before.hits)
                recordTokenCacheLookups(hit: false, count: misses - before.misses)
                baselines.tokenCache = (setID, hits, misses)
            }
            for (name, gauges) in baselines.issuerGauges where issuerGauges[name] == nil {
                for gauge in gauges { gauge.destroy() }
            }
            baselines.issuerGauges = issuerGauges
        }
    }

    /// The whole registry in the Prometheus text format.
    public func exposition() -> String {
        registry.emitToString()
    }
}

/// Metric handles by their labels, each made on first use and kept. Every label set is bounded
/// (see `ProxyMetrics`), and so is this table.
private final class MetricHandles<Labels: Hashable & Sendable, Handle: Sendable>: Sendable {
    private let handles = NIOLockedValueBox<[Labels: Handle]>([:])

    func handle(for labels: Labels, make: (Labels) -> Handle) -> Handle {
        handles.withLockedValue { handles in
            if let handle = handles[labels] { return handle }
            let handle = make(labels)
            handles[labels] = handle
            return handle
        }
    }
}

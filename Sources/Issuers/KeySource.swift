import Config
import FoundationEssentials
import Logging
import NIOConcurrencyHelpers
import NIOSSL

/// An issuer's discovery document and signing keys: the fetcher, the last good keys, their
/// periodic refresh and the on-demand refetch. A key source depends only on the issuer's URL,
/// discovery URL and CA (`IssuerConfiguration.sharesKeySource`), so when a reload keeps those,
/// the new `IssuerSet` adopts the old set's source and neither refetches nor forgets its keys.
///
/// Lifetime: each `IssuerSet` using the source holds one claim on it. The refresh task starts
/// with the first claim (`claim()`) and is cancelled, and the HTTP client closed, when the
/// last claim is released; a retired source never fetches again.
final class KeySource: Sendable {
    /// The configuration the source was created for; only its key-source fields matter.
    let configuration: IssuerConfiguration
    private let fetcher: KeyFetcher
    private let timing: KeyRefreshTiming
    private let logger: Logger

    private struct State {
        var keys: KeySet?
        var lastError: String?
        var lastSuccess: ContinuousClock.Instant?
        var lastOnDemandFetch: ContinuousClock.Instant?
        var inFlight: Task<Void, Never>?
        var fetchCount = 0
        var fetches = KeyFetchCounts()
        var claims = 0
        var refreshTask: Task<Void, Never>?
        var retired = false
    }
    private let state = NIOLockedValueBox(State())

    /// `tls` comes from `KeyFetcher.tlsConfiguration(for:)`, checked before any source is made.
    init(configuration: IssuerConfiguration, tls: TLSConfiguration, timing: KeyRefreshTiming, logger: Logger) {
        self.configuration = configuration
        self.fetcher = KeyFetcher(configuration: configuration, tls: tls)
        self.timing = timing
        var logger = logger
        logger[metadataKey: "issuer"] = "\(configuration.name)"
        self.logger = logger
    }

    var keys: KeySet? { state.withLockedValue { $0.keys } }

    var status: IssuerStatus {
        state.withLockedValue { state in
            if state.keys == nil { return .notLoaded(lastError: state.lastError) }
            if let error = state.lastError { return .stale(lastError: error) }
            return .ready
        }
    }

    var fetchCount: Int { state.withLockedValue { $0.fetchCount } }

    var fetchCounts: KeyFetchCounts { state.withLockedValue { $0.fetches } }

    /// Whether the last claim was released: the source no longer fetches and cannot be adopted.
    var isRetired: Bool { state.withLockedValue { $0.retired } }

    /// Takes one claim; the first one starts the refresh task.
    func claim() {
        state.withLockedValue { state in
            precondition(!state.retired, "a retired key source cannot be claimed again")
            state.claims += 1
            if state.refreshTask == nil {
                state.refreshTask = Task { await self.runRefreshLoop() }
            }
        }
    }

    /// Releases one claim; the last one stops the refresh, cancels a fetch in flight and closes
    /// the HTTP client.
    func release() async {
        let stop: (Task<Void, Never>?, Task<Void, Never>?)? = state.withLockedValue { state in
            state.claims -= 1
            guard state.claims <= 0, !state.retired else { return nil }
            state.retired = true
            defer {
                state.refreshTask = nil
                state.inFlight = nil
            }
            return (state.refreshTask, state.inFlight)
        }
        guard let stop else { return }
        stop.0?.cancel()
        stop.1?.cancel()
        await fetcher.shutdown()
    }

    /// Fetches keys until the first success (with backoff), then refreshes them periodically.
    /// Returns when the task is cancelled.
    private func runRefreshLoop() async {
        var backoff = timing.initialBackoff
        while !Task.isCancelled {
            await fetch()
            let loaded = state.withLockedValue { $0.keys != nil && $0.lastError == nil }
            let delay: Duration
            if loaded {
                backoff = timing.initialBackoff
                delay = timing.refreshInterval
            } else {
                delay = backoff
                backoff = min(backoff * 2, timing.maximumBackoff)
            }
            try? await Task.sleep(for: delay)
        }
    }

    /// Refetches the keys for a token no current key verified, unless a refetch ran within
    /// `minimumRefetchInterval`; concurrent callers share one fetch. Returns the keys to retry
    /// with, or nil when no refetch happened (rate limited, or the source is retired).
    func refetchForUnverifiedToken() async -> KeySet? {
        let task: Task<Void, Never>? = state.withLockedValue { state in
            if state.retired { return nil }
            if let inFlight = state.inFlight { return inFlight }
            let now = ContinuousClock.now
            if let last = state.lastOnDemandFetch, now - last < timing.minimumRefetchInterval { return nil }
            state.lastOnDemandFetch = now
            return startFetch(&state)
        }
        guard let task else { return nil }
        await task.value
        return keys
    }

    /// Runs one fetch, or joins the one in flight.
    private func fetch() async {
        let task = state.withLockedValue { state in state.retired ? nil : startFetch(&state) }
        await task?.value
    }

    private func startFetch(_ state: inout State) -> Task<Void, Never> {
        if let inFlight = state.inFlight { return inFlight }
        state.fetchCount += 1
        let task = Task { await self.performFetch() }
        state.inFlight = task
        return task
    }

    private func performFetch() async {
        let result: Result<(KeySet, skipped: [String]), KeyFetchError>
        do {
            result = .success(try await fetcher.fetchKeys())
        } catch {
            result = .failure(error)
        }
        let (hadKeys, retired) = state.withLockedValue { state in
            defer { state.inFlight = nil }
            if state.retired { return (state.keys != nil, true) }
            switch result {
            case .success(let (keys, _)):
                state.keys = keys
                state.lastError = nil
                state.lastSuccess = .now
                state.fetches.successes += 1
                state.fetches.lastSuccess = Date()
            case .failure(let error):
                state.lastError = error.description
                state.fetches.failures += 1
            }
            return (state.keys != nil, false)
        }
        guard !retired else { return }
        switch result {
        case .success(let (keys, skipped)):
            logger.debug("fetched signing keys", metadata: ["keys": "\(keys.entries.count)"])
            for reason in skipped { logger.info("skipped a JWKS key", metadata: ["reason": "\(reason)"]) }
        case .failure(let error):
            logger.warning(
                hadKeys ? "key refresh failed; keeping the last good keys" : "cannot fetch signing keys",
                metadata: ["error": "\(error.description)"])
        }
    }
}

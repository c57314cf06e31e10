import Config
import FoundationEssentials
import Logging
import Synchronization

/// How often an issuer's keys are fetched and retried.
public struct KeyRefreshTiming: Sendable {
    /// First retry delay after a failed fetch while no keys were ever loaded; doubles up to `maximumBackoff`.
    public var initialBackoff: Duration
    public var maximumBackoff: Duration
    /// Period of the background refresh once keys are loaded.
    public var refreshInterval: Duration
    /// At most one on-demand refetch (unknown `kid`, unverifiable signature) per this interval.
    public var minimumRefetchInterval: Duration

    public init(
        initialBackoff: Duration = .seconds(1),
        maximumBackoff: Duration = .seconds(30),
        refreshInterval: Duration = .seconds(600),
        minimumRefetchInterval: Duration = .seconds(5)
    ) {
        self.initialBackoff = initialBackoff
        self.maximumBackoff = maximumBackoff
        self.refreshInterval = refreshInterval
        self.minimumRefetchInterval = minimumRefetchInterval
    }
}

/// An issuer's key state as `/readyz` reports it.
public enum IssuerStatus: Sendable, Equatable {
    /// Keys have never been fetched; `lastError` says why, if a fetch failed.
    case notLoaded(lastError: String?)
    case ready
    /// Keys are loaded but the latest refresh failed; tokens still verify with the last good keys.
    case stale(lastError: String)

    public var isReady: Bool {
        if case .notLoaded = self { return false }
        return true
    }
}

/// One configured issuer at run time: its verifier, its current keys and their refresh.
public final class Issuer: Sendable {
    public let configuration: IssuerConfiguration
    let verifier: TokenVerifier
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
    }
    private let state = Mutex(State())

    init(
        configuration: IssuerConfiguration, allowReservedIdentities: Bool, timing: KeyRefreshTiming, logger: Logger
    ) throws(IssuerSetupError) {
        self.configuration = configuration
        self.verifier = TokenVerifier(configuration: configuration, allowReservedIdentities: allowReservedIdentities)
        self.fetcher = try KeyFetcher(configuration: configuration)
        self.timing = timing
        var logger = logger
        logger[metadataKey: "issuer"] = "\(configuration.name)"
        self.logger = logger
    }

    var keys: KeySet? { state.withLock { $0.keys } }

    public var status: IssuerStatus {
        state.withLock { state in
            if state.keys == nil { return .notLoaded(lastError: state.lastError) }
            if let error = state.lastError { return .stale(lastError: error) }
            return .ready
        }
    }

    /// How many discovery+JWKS fetches have been started (for tests and metrics).
    public var fetchCount: Int { state.withLock { $0.fetchCount } }

    /// Fetches keys until the first success (with backoff), then refreshes them periodically.
    /// Returns when the task is cancelled.
    func runRefreshLoop() async {
        var backoff = timing.initialBackoff
        while !Task.isCancelled {
            await fetch()
            let loaded = state.withLock { $0.keys != nil && $0.lastError == nil }
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
    /// with, or nil when no refetch happened (rate limited).
    func refetchForUnverifiedToken() async -> KeySet? {
        let task: Task<Void, Never>? = state.withLock { state in
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
        await state.withLock { startFetch(&$0) }.value
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
        let hadKeys = state.withLock { state in
            defer { state.inFlight = nil }
            switch result {
            case .success(let (keys, _)):
                state.keys = keys
                state.lastError = nil
                state.lastSuccess = .now
            case .failure(let error):
                state.lastError = error.description
            }
            return state.keys != nil
        }
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

    func shutdown() async {
        let task = state.withLock { $0.inFlight }
        task?.cancel()
        await fetcher.shutdown()
    }
}

import Config
import FoundationEssentials
import Logging

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

/// How an issuer's discovery+JWKS fetches have ended.
public struct KeyFetchCounts: Sendable, Hashable {
    public var successes = 0
    public var failures = 0
    /// When a fetch last succeeded.
    public var lastSuccess: Date?

    public init() {}
}

/// One configured issuer at run time: its configuration, its verifier, and the key source it
/// shares with any other set that configures the same URL, discovery URL and CA.
public final class Issuer: Sendable {
    public let configuration: IssuerConfiguration
    let verifier: TokenVerifier
    let keySource: KeySource

    init(configuration: IssuerConfiguration, allowReservedIdentities: Bool, keySource: KeySource) {
        self.configuration = configuration
        self.verifier = TokenVerifier(configuration: configuration, allowReservedIdentities: allowReservedIdentities)
        self.keySource = keySource
    }

    var keys: KeySet? { keySource.keys }

    public var status: IssuerStatus { keySource.status }

    /// How many discovery+JWKS fetches have been started (for tests and metrics).
    public var fetchCount: Int { keySource.fetchCount }

    /// How the key source's fetches have ended, for the metrics endpoint. Shared with every set
    /// that adopted the same source, so the counts survive reloads that keep it.
    public var fetchCounts: KeyFetchCounts { keySource.fetchCounts }

    /// Identifies the key source, so a reader of `fetchCounts` can tell a new source (counting
    /// from zero) from the one it read before.
    public var keySourceID: ObjectIdentifier { ObjectIdentifier(keySource) }

    /// Whether both use the same key source: the same keys, fetched once (after a reload that
    /// kept this issuer's URL, discovery URL and CA).
    public func sharesKeys(with other: Issuer) -> Bool {
        keySource === other.keySource
    }

    func refetchForUnverifiedToken() async -> KeySet? {
        await keySource.refetchForUnverifiedToken()
    }
}

import FoundationEssentials
import NIOConcurrencyHelpers

/// How configuration reloads have gone since the process started: what the reload metrics
/// (`config reloads by result, last-success time`) are made from.
public struct ReloadStatus: Sendable, Hashable {
    /// Reloads that were applied.
    public var successes = 0
    /// Reloads refused (unreadable file, invalid YAML, validation problems, an issuer that
    /// cannot be set up); the running configuration stayed.
    public var failures = 0
    /// When a configuration was last loaded and applied, the start-up load included.
    public var lastSuccess: Date?
    /// Lowercase hex SHA-256 of the config file bytes last applied; nil in flags-only mode.
    public var configurationSHA256: String?

    public init() {}
}

/// The process's `ReloadStatus`, updated by the reloader and read by whoever reports it.
public final class CurrentReloadStatus: Sendable {
    private let value = NIOLockedValueBox(ReloadStatus())

    public init() {}

    public var current: ReloadStatus { value.withLockedValue { $0 } }

    /// Records the configuration loaded at start-up (not counted as a reload).
    public func recordInitialLoad(sha256: String?, at time: Date = Date()) {
        value.withLockedValue {
            $0.lastSuccess = time
            $0.configurationSHA256 = sha256
        }
    }

    public func recordSuccess(sha256: String?, at time: Date = Date()) {
        value.withLockedValue {
            $0.successes += 1
            $0.lastSuccess = time
            $0.configurationSHA256 = sha256
        }
    }

    public func recordFailure() {
        value.withLockedValue { $0.failures += 1 }
    }
}

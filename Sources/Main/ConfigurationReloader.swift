import Config
import Gateway
import Issuers
import Logging
import UnixSignals

/// Re-reads the configuration on SIGHUP and when the file's content changes (SPEC §4), and swaps
/// a valid result in as a new `IssuerSet` snapshot. Reloads run one at a time.
///
/// - A refused reload (unreadable file, invalid YAML, any validation problem, an issuer that
///   cannot be set up) leaves the running snapshot in place and logs every problem with its path.
/// - Settings bound at start (listen addresses, upstream) are compared, and a change is logged
///   and not applied: the new snapshot keeps the running values.
/// - Issuers whose URL, discovery URL and CA are unchanged keep their key source.
actor ConfigurationReloader {
    enum Trigger: String {
        case signal = "SIGHUP"
        case fileChanged = "file content changed"
    }

    private let flags: ProxyFlags
    private let issuers: CurrentIssuers
    private let status: CurrentReloadStatus
    private let timing: KeyRefreshTiming
    private let logger: Logger
    /// SHA-256 of the file content last read, applied or refused: the poll reloads only when the
    /// content differs, so a refused file is not retried (and re-logged) every few seconds.
    private var lastSeenSHA256: String?

    init(
        flags: ProxyFlags, issuers: CurrentIssuers, status: CurrentReloadStatus, loadedSHA256: String?,
        timing: KeyRefreshTiming, logger: Logger
    ) {
        self.flags = flags
        self.issuers = issuers
        self.status = status
        self.lastSeenSHA256 = loadedSHA256
        self.timing = timing
        self.logger = logger
    }

    /// How often the file's content is hashed. A mounted ConfigMap changes by a `..data` symlink
    /// swap, which inode or event watching on the file itself misses; reading the content doesn't.
    static let pollInterval = Duration.seconds(2)

    /// Reloads on every signal from `hangups` and whenever the file's content changes, until cancelled.
    func run(hangups: UnixSignalsSequence) async {
        await withDiscardingTaskGroup { group in
            group.addTask {
                for await _ in hangups { await self.reload(trigger: .signal) }
            }
            if flags.configFile != nil {
                group.addTask {
                    while !Task.isCancelled {
                        try? await Task.sleep(for: Self.pollInterval)
                        if Task.isCancelled { break }
                        await self.reloadIfFileChanged()
                    }
                }
            }
        }
    }

    /// Reloads when the file's content hash differs from the one last read.
    func reloadIfFileChanged() async {
        guard let path = flags.configFile, let file = try? ConfigurationFile.read(path) else { return }
        if file.sha256 != lastSeenSHA256 { await reload(trigger: .fileChanged, file: file) }
    }

    /// Loads, validates and applies the configuration; returns whether it was applied.
    @discardableResult
    func reload(trigger: Trigger, file: ConfigurationFile? = nil) async -> Bool {
        let running = issuers.current
        let loaded: LoadedConfiguration
        do {
            if let path = flags.configFile {
                let current: ConfigurationFile
                if let file {
                    current = file
                } else {
                    current = try ConfigurationFile.read(path)
                }
                lastSeenSHA256 = current.sha256
                loaded = try ConfigurationLoader.load(flags: flags, file: current)
            } else {
                loaded = try ConfigurationLoader.loadWithSource(flags: flags)
            }
        } catch {
            refuse(trigger: trigger, problems: error.problems.map(\.description))
            return false
        }

        var configuration = loaded.configuration
        for change in Self.changesNeedingRestart(from: running.configuration, to: configuration) {
            logger.warning(
                "configuration change needs a restart and is not applied; restart the proxy (kubectl rollout restart)",
                metadata: [
                    "setting": "\(change.setting)", "running": "\(change.running)", "wanted": "\(change.wanted)",
                ])
        }
        configuration.listenAddress = running.configuration.listenAddress
        configuration.metricsAddress = running.configuration.metricsAddress
        configuration.upstream = running.configuration.upstream

        let next: IssuerSet
        do {
            next = try IssuerSet(
                configuration: configuration, timing: timing, logger: logger, adoptingKeysFrom: running)
        } catch {
            refuse(trigger: trigger, problems: [error.description])
            return false
        }
        let previous = issuers.replace(with: next)
        await previous.shutdown()
        status.recordSuccess(sha256: loaded.file?.sha256)

        let kept = next.issuers.filter { issuer in previous.issuers.contains { $0.sharesKeys(with: issuer) } }
        logger.info(
            "configuration reloaded",
            metadata: [
                "trigger": "\(trigger.rawValue)",
                "issuers": "\(next.issuers.map(\.configuration.name).joined(separator: ","))",
                "keptKeys": "\(kept.map(\.configuration.name).joined(separator: ","))",
                "sha256": "\(loaded.file?.sha256 ?? "-")",
            ])
        for note in loaded.notes { logger.info("configuration note", metadata: ["note": "\(note)"]) }
        return true
    }

    private func refuse(trigger: Trigger, problems: [String]) {
        status.recordFailure()
        logger.error(
            "configuration reload refused; the running configuration stays",
            metadata: [
                "trigger": "\(trigger.rawValue)", "problems": "\(problems.count)",
                "config": "\(flags.configFile ?? "flags only")",
            ])
        for problem in problems {
            logger.error("configuration problem", metadata: ["problem": "\(problem)"])
        }
    }

    struct RestartChange: Equatable {
        var setting: String
        var running: String
        var wanted: String
    }

    /// The settings bound when the process started that differ between `running` and `wanted`.
    static func changesNeedingRestart(
        from running: ProxyConfiguration, to wanted: ProxyConfiguration
    ) -> [RestartChange] {
        var changes: [RestartChange] = []
        if running.listenAddress != wanted.listenAddress {
            changes.append(
                RestartChange(
                    setting: "listenAddr", running: "\(running.listenAddress)", wanted: "\(wanted.listenAddress)"))
        }
        if running.metricsAddress != wanted.metricsAddress {
            changes.append(
                RestartChange(
                    setting: "metricsAddr", running: running.metricsAddress.map { "\($0)" } ?? "\"\"",
                    wanted: wanted.metricsAddress.map { "\($0)" } ?? "\"\""))
        }
        if running.upstream != wanted.upstream {
            changes.append(
                RestartChange(
                    setting: "upstream", running: describe(running.upstream), wanted: describe(wanted.upstream)))
        }
        return changes
    }

    private static func describe(_ upstream: UpstreamSource) -> String {
        switch upstream {
        case .inCluster: "in-cluster"
        case .kubeconfig(let path): "kubeconfig \(path)"
        case .server(let url, _, let tokenFile): "\(url) (token \(tokenFile))"
        }
    }
}

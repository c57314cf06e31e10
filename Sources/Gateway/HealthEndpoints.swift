import Config
import Issuers
import NIOConcurrencyHelpers
import NIOHTTP1
import Synchronization

/// `/healthz`, `/livez` and `/readyz` in the format Kubernetes components use, so probes,
/// `kubectl get --raw /readyz?verbose` and humans read them the same way.
public final class HealthEndpoints: Sendable {
    private let shuttingDown = Atomic<Bool>(false)
    private let issuers: CurrentIssuers

    /// The readiness policy (`all` or `any`) is the current snapshot's, so a reload changes it.
    public init(issuers: CurrentIssuers) {
        self.issuers = issuers
    }

    /// Makes `/readyz` fail from now on (graceful shutdown has begun).
    public func beginShutdown() {
        shuttingDown.store(true, ordering: .relaxed)
    }

    struct Answer {
        var status: HTTPResponseStatus
        var body: String
    }

    /// Whether `path` (without query) is served here rather than proxied.
    static func handles(path: Substring) -> Bool {
        // Every other request pays only for this: the byte after the slash starts no health path.
        guard let second = path.utf8.dropFirst().first,
            second == UInt8(ascii: "h") || second == UInt8(ascii: "l") || second == UInt8(ascii: "r")
        else { return false }
        return path == "/healthz" || path == "/livez" || path == "/readyz" || path.hasPrefix("/readyz/")
            || path.hasPrefix("/healthz/") || path.hasPrefix("/livez/")
    }

    func answer(path: Substring, query: Substring?) -> Answer {
        let (endpoint, single) = Self.split(path)
        var checks: [Check] = [Check(name: "ping")]
        if endpoint == "readyz" {
            checks.append(Check(name: "config"))
            let issuerSet = issuers.current
            var anyReady = false
            var issuerChecks: [Check] = []
            for issuer in issuerSet.issuers {
                let status = issuer.status
                anyReady = anyReady || status.isReady
                var check = Check(name: "issuer-\(issuer.configuration.name)")
                switch status {
                case .ready:
                    break
                case .stale(let lastError):
                    check.note = "keys stale: last refresh failed: " + HealthReason.sanitize(lastError)
                case .notLoaded(let lastError):
                    check.failure =
                        "signing keys not fetched yet" + (lastError.map { ": " + HealthReason.sanitize($0) } ?? "")
                }
                issuerChecks.append(check)
            }
            if issuerSet.configuration.readiness == .any && anyReady {
                // One ready issuer is enough: the others are reported, but do not fail the check.
                issuerChecks = issuerChecks.map { check in
                    guard let failure = check.failure else { return check }
                    return Check(name: check.name, note: "not required with readiness any: \(failure)")
                }
            }
            checks += issuerChecks
            checks.append(
                Check(
                    name: "shutdown",
                    failure: shuttingDown.load(ordering: .relaxed) ? "the proxy is shutting down" : nil))
        }

        if let single {
            guard let check = checks.first(where: { $0.name == single }) else {
                return Answer(status: .notFound, body: "404 page not found\n")
            }
            if let failure = check.failure {
                return Answer(status: .internalServerError, body: "internal server error: \(failure)\n")
            }
            return Answer(status: .ok, body: "ok")
        }

        var verbose = false
        var excluded: Set<Substring> = []
        for item in (query ?? "").split(separator: "&") {
            let parts = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            if parts[0] == "verbose" { verbose = parts.count == 1 || parts[1] != "false" }
            if parts[0] == "exclude", parts.count == 2 { excluded.insert(parts[1]) }
        }
        var lines = ""
        var failed = false
        for check in checks {
            if excluded.remove(Substring(check.name)) != nil {
                lines += "[+]\(check.name) excluded: ok\n"
            } else if let failure = check.failure {
                failed = true
                lines += "[-]\(check.name) failed: \(failure)\n"
            } else if let note = check.note {
                lines += "[+]\(check.name) ok (\(note))\n"
            } else {
                lines += "[+]\(check.name) ok\n"
            }
        }
        if !excluded.isEmpty {
            lines +=
                "warn: some health checks cannot be excluded: no matches for "
                + excluded.sorted().map { "\"\($0)\"" }.joined(separator: ",") + "\n"
        }
        if failed { return Answer(status: .internalServerError, body: lines + "\(endpoint) check failed\n") }
        if !verbose { return Answer(status: .ok, body: "ok") }
        return Answer(status: .ok, body: lines + "\(endpoint) check passed\n")
    }

    /// One named check: passing (with an optional note, e.g. stale keys) or failing with a reason.
    struct Check {
        var name: String
        var failure: String?
        var note: String?
    }

    private static func split(_ path: Substring) -> (endpoint: Substring, single: Substring?) {
        let trimmed = path.dropFirst()
        guard let slash = trimmed.firstIndex(of: "/") else { return (trimmed, nil) }
        return (trimmed[..<slash], trimmed[trimmed.index(after: slash)...])
    }
}

/// The issuer set requests are checked against, swapped whole on reload.
public final class CurrentIssuers: Sendable {
    private let value: NIOLockedValueBox<IssuerSet>

    public init(_ issuers: IssuerSet) {
        self.value = NIOLockedValueBox(issuers)
    }

    public var current: IssuerSet { value.withLockedValue { $0 } }

    /// Installs `issuers` for every request that starts from now on; returns the previous set.
    @discardableResult
    public func replace(with issuers: IssuerSet) -> IssuerSet {
        value.withLockedValue { current in
            defer { current = issuers }
            return current
        }
    }
}

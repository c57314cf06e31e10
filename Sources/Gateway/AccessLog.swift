import Issuers
import Logging

/// One proxied request as the access log and the request metrics see it, once it is over.
public struct AccessLogEntry: Sendable {
    public var identity: Identity?
    public var method: String
    /// The request target without its query (a query can carry anything, a token included).
    public var path: Substring
    /// nil: no response was sent (the client went away first).
    public var status: Int?
    /// Response body bytes sent to the client.
    public var bytes: Int
    public var duration: Duration
    /// From the request head sent upstream to the response head received; nil when the request
    /// never got an answer from the API server (refused locally, or the upstream failed).
    public var upstreamLatency: Duration?
    public var clientAddress: String?

    public init(
        identity: Identity?, method: String, path: Substring, status: Int?, bytes: Int, duration: Duration,
        upstreamLatency: Duration?, clientAddress: String?
    ) {
        self.identity = identity
        self.method = method
        self.path = path
        self.status = status
        self.bytes = bytes
        self.duration = duration
        self.upstreamLatency = upstreamLatency
        self.clientAddress = clientAddress
    }

    /// The access-log line's fields, sorted by name. The token is never among them; user and
    /// groups are the mapped identity, which is what the API server sees.
    public var fields: [(name: String, value: String)] {
        [
            ("bytes", String(bytes)),
            ("client", clientAddress ?? "-"),
            ("duration_ms", Self.milliseconds(duration)),
            ("groups", identity?.groups.joined(separator: ",") ?? ""),
            ("issuer", identity?.issuerName ?? "-"),
            ("method", method),
            ("path", String(path)),
            ("status", String(status ?? 0)),
            ("upstream_ms", upstreamLatency.map(Self.milliseconds) ?? "-"),
            ("user", identity?.username ?? "-"),
        ]
    }

    /// Whole microseconds, never negative (durations come from a monotonic clock; a negative
    /// one would be a bug, logged as 0 rather than as a malformed number).
    public static func microseconds(_ duration: Duration) -> Int64 {
        max(0, duration.components.seconds * 1_000_000 + duration.components.attoseconds / 1_000_000_000_000)
    }

    /// The fields as the metadata of the `request` log event.
    public var metadata: Logger.Metadata {
        Dictionary(uniqueKeysWithValues: fields.map { ($0.name, Logger.MetadataValue.string($0.value)) })
    }

    /// Milliseconds with microsecond precision, e.g. `12.345`.
    static func milliseconds(_ duration: Duration) -> String {
        let micros = microseconds(duration)
        let fraction = String(micros % 1000)
        return "\(micros / 1000)." + String(repeating: "0", count: 3 - fraction.count) + fraction
    }
}

/// Where the access log goes instead of the gateway's logger: a writer that formats the line
/// itself, without the metadata dictionary a log event needs.
public protocol AccessLogWriter: Sendable {
    func write(_ entry: AccessLogEntry)
}

/// Writes the access-log line and records the request metrics, once per proxied request.
enum AccessLog {
    static func record(_ entry: AccessLogEntry, gateway: GatewayContext) {
        if let writer = gateway.accessLog {
            writer.write(entry)
        } else {
            gateway.logger.info("request", metadata: entry.metadata)
        }
        gateway.metrics.requestFinished(method: entry.method, code: entry.status, duration: entry.duration)
    }
}

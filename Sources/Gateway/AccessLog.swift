import Issuers
import Logging

/// One proxied request as the access log and the request metrics see it, once it is over.
struct AccessLogEntry {
    var identity: Identity?
    var method: String
    /// The request target without its query (a query can carry anything, a token included).
    var path: Substring
    /// nil: no response was sent (the client went away first).
    var status: Int?
    /// Response body bytes sent to the client.
    var bytes: Int
    var duration: Duration
    /// From the request head sent upstream to the response head received; nil when the request
    /// never got an answer from the API server (refused locally, or the upstream failed).
    var upstreamLatency: Duration?
    var clientAddress: String?

    /// The access-log line's fields. The token is never among them; user and groups are the
    /// mapped identity, which is what the API server sees.
    var metadata: Logger.Metadata {
        [
            "issuer": "\(identity?.issuerName ?? "-")",
            "user": "\(identity?.username ?? "-")",
            "groups": "\(identity?.groups.joined(separator: ",") ?? "")",
            "method": "\(method)",
            "path": "\(path)",
            "status": "\(status ?? 0)",
            "bytes": "\(bytes)",
            "duration_ms": "\(Self.milliseconds(duration))",
            "upstream_ms": "\(upstreamLatency.map(Self.milliseconds) ?? "-")",
            "client": "\(clientAddress ?? "-")",
        ]
    }

    /// Milliseconds with microsecond precision, e.g. `12.345`.
    static func milliseconds(_ duration: Duration) -> String {
        let micros = duration.components.seconds * 1_000_000 + duration.components.attoseconds / 1_000_000_000_000
        let fraction = String(micros % 1000)
        return "\(micros / 1000)." + String(repeating: "0", count: 3 - fraction.count) + fraction
    }
}

/// Writes the access-log line and records the request metrics, once per proxied request.
enum AccessLog {
    static func record(_ entry: AccessLogEntry, logger: Logger, metrics: ProxyMetrics) {
        logger.info("request", metadata: entry.metadata)
        metrics.requestFinished(method: entry.method, code: entry.status, duration: entry.duration)
    }
}

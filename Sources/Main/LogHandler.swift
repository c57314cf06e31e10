import Config
import FoundationEssentials
import Gateway
import Logging

/// How each log line is written.
enum LogFormat: String, CaseIterable, Sendable {
    /// `2026-01-02T03:04:05.678Z info request issuer=a user=alice status=200 ...`
    case text
    /// One JSON object per line: `time`, `level`, `message`, then every metadata field.
    case json
}

/// The proxy's log handler: one line per event on standard error, in `text` or `json`.
/// Lines from concurrent loggers never interleave (see `LogSink`, which also batches the
/// lines an event loop logs in one round of I/O).
struct ProxyLogHandler: LogHandler {
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level
    var metadataProvider: Logger.MetadataProvider?
    private let format: LogFormat
    private let write: @Sendable (String) -> Void

    init(
        format: LogFormat, level: Logger.Level,
        write: @escaping @Sendable (String) -> Void = ProxyLogHandler.standardError
    ) {
        self.format = format
        self.logLevel = level
        self.write = write
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var fields: Logger.Metadata
        if metadata.isEmpty && metadataProvider == nil {
            // The usual case (the access log among it): no copy, no merge.
            fields = event.metadata ?? [:]
        } else {
            fields = metadata
            if let provided = metadataProvider?.get() { fields.merge(provided) { _, new in new } }
            if let extra = event.metadata { fields.merge(extra) { _, new in new } }
        }
        if let error = event.error { fields["error"] = "\(error)" }
        write(
            Self.line(format: format, time: Date(), level: event.level, message: "\(event.message)", metadata: fields))
    }

    /// One log line, newline included.
    static func line(
        format: LogFormat, time: Date, level: Logger.Level, message: String, metadata: Logger.Metadata
    ) -> String {
        line(
            format: format, time: time, level: level, message: message,
            fields: metadata.keys.sorted().map { ($0, flatten(metadata[$0]!)) })
    }

    /// One log line from fields already flattened and sorted by name, newline included.
    static func line(
        format: LogFormat, time: Date, level: Logger.Level, message: String,
        fields: [(name: String, value: String)]
    ) -> String {
        var line: [UInt8] = []
        line.reserveCapacity(64 + 56 * fields.count)
        LogLineBytes.appendStart(format: format, time: time, level: level, message: message, to: &line)
        // In JSON the three leading keys are the line's own; a field of the same name would repeat them.
        for (name, value) in fields where format == .text || (name != "time" && name != "level" && name != "message") {
            LogLineBytes.appendField(name, .text(value[...]), format: format, to: &line)
        }
        LogLineBytes.appendEnd(format: format, to: &line)
        return String(decoding: line, as: UTF8.self)
    }

    /// A metadata value as one string.
    private static func flatten(_ value: Logger.Metadata.Value) -> String {
        switch value {
        case .string(let text): text
        case .stringConvertible(let convertible): convertible.description
        case .array(let values): values.map(flatten).joined(separator: ",")
        case .dictionary(let values):
            values.keys.sorted().map { "\($0)=\(flatten(values[$0]!))" }.joined(separator: ",")
        }
    }

    /// RFC 3339 in UTC with milliseconds: `2026-01-02T03:04:05.678Z`.
    static func timestamp(_ date: Date) -> String {
        let millis = Int64((date.timeIntervalSince1970 * 1000).rounded(.down))
        let seconds = millis / 1000
        let (days, secondOfDay) = (seconds / 86_400, seconds % 86_400)
        // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let monthIndex = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * monthIndex + 2) / 5 + 1
        let month = monthIndex < 10 ? monthIndex + 3 : monthIndex - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        return String(unsafeUninitializedCapacity: 24) { buffer in
            var offset = 0
            func put(_ value: Int64, width: Int) {
                var value = value
                for position in stride(from: offset + width - 1, through: offset, by: -1) {
                    buffer[position] = UInt8(ascii: "0") + UInt8(truncatingIfNeeded: value % 10)
                    value /= 10
                }
                offset += width
            }
            func put(_ character: Unicode.Scalar) {
                buffer[offset] = UInt8(ascii: character)
                offset += 1
            }
            put(year, width: 4)
            put("-")
            put(month, width: 2)
            put("-")
            put(day, width: 2)
            put("T")
            put(secondOfDay / 3600, width: 2)
            put(":")
            put(secondOfDay % 3600 / 60, width: 2)
            put(":")
            put(secondOfDay % 60, width: 2)
            put(".")
            put(millis % 1000, width: 3)
            put("Z")
            return offset
        }
    }

    @Sendable static func standardError(_ line: String) {
        LogSink.standardError.write(line)
    }
}

/// The access log as the proxy writes it: the same line `ProxyLogHandler` makes of a `request`
/// event with the entry's metadata, written as bytes straight from the entry
/// (`AccessLogLineBytes`).
struct AccessLogLines: AccessLogWriter {
    let format: LogFormat
    let sink: LogSink

    func write(_ entry: AccessLogEntry) {
        let time = Date()
        sink.write { AccessLogLineBytes.append(entry, format: format, time: time, to: &$0) }
    }
}

import Config
import FoundationEssentials
import Gateway
import Logging

/// Log lines written as bytes, in `text` or `json`: the one writer behind every event's line
/// (`ProxyLogHandler.line`) and the access log's (`AccessLogLineBytes`, which writes straight
/// into the log sink's batch without a string in between).
///
/// Escaping decides on ASCII bytes only, and every byte of a multi-byte character is `>= 0x80`,
/// so working byte by byte on valid UTF-8 is the same as working on Unicode scalars.
enum LogLineBytes {
    /// A field's value, kept as what it is until it is written.
    enum Value {
        case text(Substring)
        case decimal(Int)
        /// Milliseconds with microsecond precision, `12.345`; `-` when nil.
        case milliseconds(Duration?)
        /// Joined with commas, as one value.
        case groups([String])
    }

    /// `2026-01-02T03:04:05.678Z info request` or `{"time":…,"level":…,"message":…`.
    static func appendStart(
        format: LogFormat, time: Date, level: Logger.Level, message: String, to line: inout [UInt8]
    ) {
        switch format {
        case .text:
            line.append(contentsOf: ProxyLogHandler.timestamp(time).utf8)
            line.append(UInt8(ascii: " "))
            line.append(contentsOf: level.rawValue.utf8)
            line.append(UInt8(ascii: " "))
            line.append(contentsOf: message.utf8)
        case .json:
            line.append(contentsOf: #"{"time":""#.utf8)
            line.append(contentsOf: ProxyLogHandler.timestamp(time).utf8)
            line.append(contentsOf: #"","level":""#.utf8)
            line.append(contentsOf: level.rawValue.utf8)
            line.append(contentsOf: #"","message":"#.utf8)
            JSONText.appendQuoted(message[...], to: &line)
        }
    }

    /// ` name=value` (the value bare when it is one plain word, else a JSON string), or
    /// `,"name":"value"` (every value a JSON string, as the log handler writes metadata).
    static func appendField(_ name: String, _ value: Value, format: LogFormat, to line: inout [UInt8]) {
        switch format {
        case .text:
            line.append(UInt8(ascii: " "))
            line.append(contentsOf: name.utf8)
            line.append(UInt8(ascii: "="))
            switch value {
            case .text(let text): appendTextValue(text, to: &line)
            case .decimal(let number): appendDecimal(number, to: &line)
            case .milliseconds(let duration): appendMilliseconds(duration, to: &line)
            case .groups(let groups): appendTextGroups(groups, to: &line)
            }
        case .json:
            line.append(UInt8(ascii: ","))
            JSONText.appendQuoted(name[...], to: &line)
            line.append(contentsOf: #":""#.utf8)
            switch value {
            case .text(let text): JSONText.appendEscaped(text, to: &line)
            case .decimal(let number): appendDecimal(number, to: &line)
            case .milliseconds(let duration): appendMilliseconds(duration, to: &line)
            case .groups(let groups):
                for (index, group) in groups.enumerated() {
                    if index > 0 { line.append(UInt8(ascii: ",")) }
                    JSONText.appendEscaped(group[...], to: &line)
                }
            }
            line.append(UInt8(ascii: "\""))
        }
    }

    /// The end of the line, newline included.
    static func appendEnd(format: LogFormat, to line: inout [UInt8]) {
        line.append(contentsOf: (format == .text ? "\n" : "}\n").utf8)
    }

    // MARK: text values

    /// Bare when the value is one plain word, else a quoted, escaped string: no value can forge
    /// another field (`user=a status=200`) or split the line.
    private static func appendTextValue(_ value: Substring, to line: inout [UInt8]) {
        // Over the contiguous bytes: every value of every access-log line passes here, and the
        // generic walk of a `Substring.UTF8View` cost three times the instructions.
        var value = value
        let appendedPlain = value.withUTF8 { bytes in
            guard !bytes.isEmpty && bytes.allSatisfy(isPlainTextByte) else { return false }
            line.append(contentsOf: bytes)
            return true
        }
        if !appendedPlain { JSONText.appendQuoted(value, to: &line) }
    }

    /// The groups joined with commas, as one text value. A comma is plain, so the joined value
    /// is plain when it is not empty and every group is.
    private static func appendTextGroups(_ groups: [String], to line: inout [UInt8]) {
        let empty = groups.isEmpty || (groups.count == 1 && groups[0].isEmpty)
        if !empty && groups.allSatisfy({ $0.utf8.allSatisfy(isPlainTextByte) }) {
            for (index, group) in groups.enumerated() {
                if index > 0 { line.append(UInt8(ascii: ",")) }
                line.append(contentsOf: group.utf8)
            }
        } else {
            JSONText.appendQuoted(groups.joined(separator: ",")[...], to: &line)
        }
    }

    /// Above the space, not DEL, `"` or `=`; every byte of a multi-byte character passes.
    private static func isPlainTextByte(_ byte: UInt8) -> Bool {
        byte > 0x20 && byte != 0x7F && byte != UInt8(ascii: "\"") && byte != UInt8(ascii: "=")
    }

    // MARK: numbers

    /// A decimal integer, `-` first when negative.
    private static func appendDecimal(_ value: Int, to line: inout [UInt8]) {
        if value < 0 { line.append(UInt8(ascii: "-")) }
        appendDigits(value.magnitude, minimumWidth: 1, to: &line)
    }

    /// Milliseconds with microsecond precision, as `AccessLogEntry.milliseconds` writes them.
    private static func appendMilliseconds(_ duration: Duration?, to line: inout [UInt8]) {
        guard let duration else {
            line.append(UInt8(ascii: "-"))
            return
        }
        let micros = AccessLogEntry.microseconds(duration)
        appendDigits(UInt(micros / 1000), minimumWidth: 1, to: &line)
        line.append(UInt8(ascii: "."))
        appendDigits(UInt(micros % 1000), minimumWidth: 3, to: &line)
    }

    private static func appendDigits(_ value: UInt, minimumWidth: Int, to line: inout [UInt8]) {
        let start = line.count
        var rest = value
        repeat {
            line.append(UInt8(ascii: "0") + UInt8(rest % 10))
            rest /= 10
        } while rest > 0
        while line.count - start < minimumWidth { line.append(UInt8(ascii: "0")) }
        // Reversed in place: `line[start...].reverse()` would copy the slice.
        var low = start
        var high = line.count - 1
        while low < high {
            line.swapAt(low, high)
            low += 1
            high -= 1
        }
    }
}

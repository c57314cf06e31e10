import FoundationEssentials
import Gateway
import Issuers

/// The access-log line of one entry, written as bytes straight into the log sink's batch: the
/// very line `ProxyLogHandler.line` makes of the entry's `fields` (the tests hold the two
/// together), without the intermediate field strings, the line string and its copy. It runs
/// once per proxied request, where those came to about 5 % of the proxy's CPU.
///
/// Every value is a valid Swift `String` (valid UTF-8), and the escaping decisions only look at
/// ASCII bytes, so working byte by byte gives the same result as the scalar-wise formatter:
/// each byte of a multi-byte character is `>= 0x80` and is copied as is.
enum AccessLogLineBytes {
    /// A field's value, kept as what it is until it is written.
    private enum Value {
        case text(Substring)
        case decimal(Int)
        /// `-` when nil.
        case milliseconds(Duration?)
        /// Joined with commas.
        case groups([String])
    }

    static func append(
        _ entry: AccessLogEntry, format: LogFormat, time: Date, to line: inout [UInt8]
    ) {
        switch format {
        case .text:
            line.append(contentsOf: ProxyLogHandler.timestamp(time).utf8)
            line.append(contentsOf: " info request".utf8)
        case .json:
            line.append(contentsOf: "{\"time\":\"".utf8)
            line.append(contentsOf: ProxyLogHandler.timestamp(time).utf8)
            line.append(contentsOf: "\",\"level\":\"info\",\"message\":\"request\"".utf8)
        }
        func field(_ name: StaticString, _ value: Value) {
            switch format {
            case .text: appendTextField(name, value, to: &line)
            case .json: appendJSONField(name, value, to: &line)
            }
        }
        // In name order, as `AccessLogEntry.fields`.
        field("bytes", .decimal(entry.bytes))
        field("client", .text((entry.clientAddress ?? "-")[...]))
        field("duration_ms", .milliseconds(entry.duration))
        field("groups", .groups(entry.identity?.groups ?? []))
        field("issuer", .text((entry.identity?.issuerName ?? "-")[...]))
        field("method", .text(entry.method[...]))
        field("path", .text(entry.path))
        field("status", .decimal(entry.status ?? 0))
        field("upstream_ms", .milliseconds(entry.upstreamLatency))
        field("user", .text((entry.identity?.username ?? "-")[...]))
        line.append(contentsOf: (format == .text ? "\n" : "}\n").utf8)
    }

    // MARK: text

    private static func appendTextField(_ name: StaticString, _ value: Value, to line: inout [UInt8]) {
        line.append(UInt8(ascii: " "))
        line.append(contentsOf: UnsafeBufferPointer(start: name.utf8Start, count: name.utf8CodeUnitCount))
        line.append(UInt8(ascii: "="))
        switch value {
        case .text(let text): appendTextValue(text, to: &line)
        case .decimal(let number): appendDecimal(number, to: &line)
        case .milliseconds(let duration): appendMilliseconds(duration, to: &line)
        case .groups(let groups): appendTextGroups(groups, to: &line)
        }
    }

    /// Bare when the value is one plain word (as `ProxyLogHandler` decides), else quoted.
    private static func appendTextValue<S: StringProtocol>(_ value: S, to line: inout [UInt8]) {
        if !value.isEmpty && value.utf8.allSatisfy(isPlainTextByte) {
            line.append(contentsOf: value.utf8)
        } else {
            appendJSONString(value, to: &line)
        }
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
            appendJSONString(groups.joined(separator: ","), to: &line)
        }
    }

    /// Above the space, not DEL, `"` or `=`; every byte of a multi-byte character passes.
    private static func isPlainTextByte(_ byte: UInt8) -> Bool {
        byte > 0x20 && byte != 0x7F && byte != UInt8(ascii: "\"") && byte != UInt8(ascii: "=")
    }

    // MARK: JSON

    /// Every value is a JSON string, as the log handler writes metadata.
    private static func appendJSONField(_ name: StaticString, _ value: Value, to line: inout [UInt8]) {
        line.append(contentsOf: ",\"".utf8)
        line.append(contentsOf: UnsafeBufferPointer(start: name.utf8Start, count: name.utf8CodeUnitCount))
        line.append(contentsOf: "\":\"".utf8)
        switch value {
        case .text(let text): appendJSONEscaped(text, to: &line)
        case .decimal(let number): appendDecimal(number, to: &line)
        case .milliseconds(let duration): appendMilliseconds(duration, to: &line)
        case .groups(let groups):
            for (index, group) in groups.enumerated() {
                if index > 0 { line.append(UInt8(ascii: ",")) }
                appendJSONEscaped(group, to: &line)
            }
        }
        line.append(UInt8(ascii: "\""))
    }

    /// A JSON string literal, as `JSONText.quoted` writes it.
    private static func appendJSONString<S: StringProtocol>(_ value: S, to line: inout [UInt8]) {
        line.append(UInt8(ascii: "\""))
        appendJSONEscaped(value, to: &line)
        line.append(UInt8(ascii: "\""))
    }

    /// The inside of a JSON string literal: quotes, backslashes and every control character
    /// (DEL included) escaped, `\u` with four lowercase hex digits where there is no short form.
    private static func appendJSONEscaped<S: StringProtocol>(_ value: S, to line: inout [UInt8]) {
        for byte in value.utf8 {
            switch byte {
            case UInt8(ascii: "\""): line.append(contentsOf: "\\\"".utf8)
            case UInt8(ascii: "\\"): line.append(contentsOf: "\\\\".utf8)
            case UInt8(ascii: "\n"): line.append(contentsOf: "\\n".utf8)
            case UInt8(ascii: "\r"): line.append(contentsOf: "\\r".utf8)
            case UInt8(ascii: "\t"): line.append(contentsOf: "\\t".utf8)
            case 0..<0x20, 0x7F:
                line.append(contentsOf: "\\u00".utf8)
                line.append(hexDigit(byte >> 4))
                line.append(hexDigit(byte & 0xF))
            default: line.append(byte)
            }
        }
    }

    private static func hexDigit(_ value: UInt8) -> UInt8 {
        value < 10 ? UInt8(ascii: "0") + value : UInt8(ascii: "a") + value - 10
    }

    // MARK: numbers

    /// A decimal integer, `-` first when negative.
    private static func appendDecimal(_ value: Int, to line: inout [UInt8]) {
        if value < 0 { line.append(UInt8(ascii: "-")) }
        appendDigits(value.magnitude, minimumWidth: 1, to: &line)
    }

    /// Milliseconds with microsecond precision, as `AccessLogEntry.milliseconds` writes them;
    /// `-` for none.
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
        line[start...].reverse()
    }
}

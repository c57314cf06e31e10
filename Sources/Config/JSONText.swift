/// JSON string literals, for the few places that write JSON by hand: Status bodies, JSON log
/// lines, and the effective configuration (YAML reads JSON's double-quoted strings the same way).
public enum JSONText {
    /// `text` as a JSON string literal: quotes, backslashes and every control character
    /// (DEL included) escaped, so the result is always one line.
    public static func quoted(_ text: String) -> String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(text.utf8.count + 2)
        appendQuoted(text[...], to: &bytes)
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Appends `text` as a JSON string literal, as `quoted` writes it.
    public static func appendQuoted(_ text: Substring, to bytes: inout [UInt8]) {
        bytes.append(UInt8(ascii: "\""))
        appendEscaped(text, to: &bytes)
        bytes.append(UInt8(ascii: "\""))
    }

    /// Appends the inside of `text`'s JSON string literal (on the access log's path for every
    /// request: concrete, not generic, so that it is compiled for its one type across modules): `\u` with four lowercase hex digits
    /// where there is no short form. Byte by byte: every escaped character is ASCII, and each
    /// byte of a multi-byte character (`>= 0x80`) is copied as it is.
    public static func appendEscaped(_ text: Substring, to bytes: inout [UInt8]) {
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\""): bytes.append(contentsOf: #"\""#.utf8)
            case UInt8(ascii: "\\"): bytes.append(contentsOf: #"\\"#.utf8)
            case UInt8(ascii: "\n"): bytes.append(contentsOf: #"\n"#.utf8)
            case UInt8(ascii: "\r"): bytes.append(contentsOf: #"\r"#.utf8)
            case UInt8(ascii: "\t"): bytes.append(contentsOf: #"\t"#.utf8)
            case 0..<0x20, 0x7F:
                bytes.append(contentsOf: #"\u00"#.utf8)
                bytes.append(hexDigit(byte >> 4))
                bytes.append(hexDigit(byte & 0xF))
            default: bytes.append(byte)
            }
        }
    }

    private static func hexDigit(_ value: UInt8) -> UInt8 {
        value < 10 ? UInt8(ascii: "0") + value : UInt8(ascii: "a") + value - 10
    }
}

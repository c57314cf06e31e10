#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// RFC 9113's rules for the fields of an HTTP/2 request (§8.2, §8.3), checked by
/// `HTTP2StreamsHandler.requestHead`. They are the rules `NIOHTTP2Handler`'s header-block
/// validation applies, which the listener turns off: NIO walks every byte of every value
/// through a generic `contains(where:)`, about 30 instructions a byte, so the 650 bytes of a
/// bearer token made its check a tenth of an HTTP/2 request's cost. The same rules on the
/// values' contiguous bytes cost a few hundred.
///
/// Nothing a field could smuggle into the HTTP/1.1 request to the API server gets past them:
/// NUL, CR and LF in any value; space and control characters in a pseudo-header; a name that
/// is not a lower-case token; the connection-specific fields.
enum HTTP2FieldRules {
    /// What a regular field's name makes it, for the request-block rules.
    enum FieldKind {
        /// `connection`, `keep-alive`, `proxy-connection`, `transfer-encoding`, `upgrade`:
        /// forbidden in HTTP/2 (§8.2.2).
        case connectionSpecific
        /// `te`: allowed with the value `trailers` only.
        case te
        case host
        case contentLength
        case other
    }

    /// Compares by length first: most names match none of these, and say so in one comparison.
    static func kind(of name: String) -> FieldKind {
        switch name.utf8.count {
        case 2: name == "te" ? .te : .other
        case 4: name == "host" ? .host : .other
        case 7: name == "upgrade" ? .connectionSpecific : .other
        case 10: name == "connection" || name == "keep-alive" ? .connectionSpecific : .other
        case 14: name == "content-length" ? .contentLength : .other
        case 16: name == "proxy-connection" ? .connectionSpecific : .other
        case 17: name == "transfer-encoding" ? .connectionSpecific : .other
        default: .other
        }
    }

    /// A regular field's name: one or more token characters, none of them upper case (HTTP/2
    /// sends names in lower case, §8.2.1).
    static func isFieldName(_ name: String) -> Bool {
        bytes(of: name) { bytes in
            !bytes.isEmpty && bytes.allSatisfy(isLowerCaseTokenCharacter)
        }
    }

    /// A regular field's value: no NUL, LF or CR anywhere (§8.2.1).
    static func isFieldValue(_ value: String) -> Bool {
        bytes(of: value) { bytes in
            guard let base = bytes.baseAddress else { return true }
            return memchr(base, 0x0D, bytes.count) == nil && memchr(base, 0x0A, bytes.count) == nil
                && memchr(base, 0x00, bytes.count) == nil
        }
    }

    /// A pseudo-header's value: no control character, space or DEL, which no pseudo-header's
    /// grammar admits and which could break the HTTP/1.1 request line it becomes.
    static func isPseudoHeaderValue(_ value: String) -> Bool {
        bytes(of: value) { bytes in
            !bytes.contains { $0 <= 0x20 || $0 == 0x7F }
        }
    }

    /// RFC 9110 `tchar`, less `A`-`Z`.
    private static func isLowerCaseTokenCharacter(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
            UInt8(ascii: "!"), UInt8(ascii: "#")...UInt8(ascii: "'"), UInt8(ascii: "*"), UInt8(ascii: "+"),
            UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "^"), UInt8(ascii: "_"), UInt8(ascii: "`"),
            UInt8(ascii: "|"), UInt8(ascii: "~"):
            true
        default:
            false
        }
    }

    /// `body` on the string's UTF-8 bytes: in place for a native string, copied otherwise.
    private static func bytes(of string: String, _ body: (UnsafeBufferPointer<UInt8>) -> Bool) -> Bool {
        if let result = string.utf8.withContiguousStorageIfAvailable(body) { return result }
        return Array(string.utf8).withUnsafeBufferPointer(body)
    }
}

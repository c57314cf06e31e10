import NIOHTTP1

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// The bearer token of an `Authorization` header, read as kube-apiserver's bearer-token
/// authenticator reads it: white space trimmed, split on single spaces, scheme `Bearer` in any
/// case, the second field is the token. Stricter in one way: several `Authorization` headers
/// are refused rather than the first one used, so no two parties can read different tokens.
///
/// Runs on every request over a value of a kilobyte or more, so it works on UTF-8 bytes; only
/// a value that starts or ends with something other than plain ASCII takes the slower path that
/// trims Unicode white space.
enum BearerToken {
    enum Extraction: Equatable {
        case token(String)
        /// No usable token: absent, several headers, another scheme, or empty.
        case missing
    }

    static func extract(from headers: HTTPHeaders) -> Extraction {
        var value: String?
        for (name, field) in headers where isAuthorization(name) {
            guard value == nil else { return .missing }
            value = field
        }
        guard let value else { return .missing }
        return token(in: value)
    }

    /// The token of one `Authorization` value.
    static func token(in value: String) -> Extraction {
        let utf8 = value.utf8
        guard let first = utf8.first, let last = utf8.last else { return .missing }
        let trimmed: Substring
        if isPlainASCII(first) && isPlainASCII(last) {
            trimmed = value[...]
        } else {
            trimmed = trimmingUnicodeWhiteSpace(value)
        }
        // strings.SplitN(auth, " ", 3): the scheme is before the first space, the token between
        // it and the next one (or the end).
        let bytes = trimmed.utf8
        guard let schemeEnd = bytes.firstIndex(of: UInt8(ascii: " ")) else { return .missing }
        guard isBearer(bytes[bytes.startIndex..<schemeEnd]) else { return .missing }
        let tokenStart = bytes.index(after: schemeEnd)
        // The token is a kilobyte or so: its contiguous bytes are searched with memchr, not
        // index by index (a byte loop was 1.5 % of a request's instructions).
        let rest = bytes[tokenStart...]
        let tokenEnd =
            rest.withContiguousStorageIfAvailable { buffer in
                firstSpace(in: buffer).map { bytes.index(tokenStart, offsetBy: $0) } ?? bytes.endIndex
            } ?? rest.firstIndex(of: UInt8(ascii: " ")) ?? bytes.endIndex
        guard tokenStart < tokenEnd else { return .missing }
        return .token(String(trimmed[tokenStart..<tokenEnd]))
    }

    /// The offset of the first space in `buffer`, if there is one.
    private static func firstSpace(in buffer: UnsafeBufferPointer<UInt8>) -> Int? {
        guard let base = buffer.baseAddress, let found = memchr(base, Int32(UInt8(ascii: " ")), buffer.count) else {
            return nil
        }
        return UnsafeRawPointer(found) - UnsafeRawPointer(base)
    }

    /// A printable ASCII byte other than the space: neither white space nor part of a
    /// multi-byte character, so nothing at that end needs trimming.
    private static func isPlainASCII(_ byte: UInt8) -> Bool {
        byte > 0x20 && byte < 0x7F
    }

    /// `authorization` in any case, compared without making a lowercased copy.
    private static func isAuthorization(_ name: String) -> Bool {
        ASCIICaseInsensitive.equals(name, "authorization")
    }

    /// `bearer` in any case, as Go's `strings.ToLower(parts[0]) == "bearer"` decides.
    private static func isBearer(_ scheme: Substring.UTF8View.SubSequence) -> Bool {
        ASCIICaseInsensitive.equals(scheme, "bearer")
    }

    private static func trimmingUnicodeWhiteSpace(_ value: String) -> Substring {
        var trimmed = value[...]
        while let first = trimmed.first, first.isWhitespace { trimmed = trimmed.dropFirst() }
        while let last = trimmed.last, last.isWhitespace { trimmed = trimmed.dropLast() }
        return trimmed
    }
}

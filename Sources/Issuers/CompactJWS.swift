#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// A token split into its compact-serialization parts (RFC 7515 §7.1), with header and
/// payload decoded but nothing verified yet.
struct CompactJWS: Sendable {
    /// The longest token considered at all; longer ones are refused before any decoding.
    static let maximumLength = 64 * 1024

    let header: [String: JSONValue]
    let claims: [String: JSONValue]
    /// `BASE64URL(header) "." BASE64URL(payload)`, the bytes the signature covers.
    let signingInput: ArraySlice<UInt8>
    let signature: [UInt8]

    /// A token cut at its dots with only the payload decoded: enough to read the unverified
    /// `iss` and route the token before any other work.
    struct Parts: Sendable {
        /// The token itself: its UTF-8 bytes are copied out only when the token goes on to
        /// full verification, so a token for no configured issuer never is.
        let token: String
        let header: Range<Int>
        let signature: Range<Int>
        let payload: [UInt8]

        init(_ token: String) throws(TokenRejection) {
            guard token.utf8.count <= CompactJWS.maximumLength else {
                throw .malformed("longer than \(CompactJWS.maximumLength) bytes")
            }
            var token = token
            // Count up to five dots (a JWE has four, a JWS two), keeping the first two offsets.
            var dots: (first: Int, second: Int) = (0, 0)
            var dotCount = 0
            var payload: [UInt8]?
            let count = token.withUTF8 { buffer in
                guard let base = buffer.baseAddress else { return 0 }
                var offset = 0
                // memchr: the token is a kilobyte or more, and this runs for every cache miss.
                while dotCount <= 4, offset < buffer.count,
                    let found = memchr(base + offset, Int32(UInt8(ascii: ".")), buffer.count - offset)
                {
                    let index = UnsafeRawPointer(found) - UnsafeRawPointer(base)
                    if dotCount == 0 { dots.first = index } else if dotCount == 1 { dots.second = index }
                    dotCount += 1
                    offset = index + 1
                }
                if dotCount == 2 {
                    payload = Base64URL.decode(UnsafeBufferPointer(rebasing: buffer[(dots.first + 1)..<dots.second]))
                }
                return buffer.count
            }
            if dotCount == 4 { throw .malformed("encrypted tokens (JWE) are not supported") }
            guard dotCount == 2 else { throw .malformed("want 3 dot-separated parts, got \(dotCount + 1)") }
            guard let payload else { throw .malformed("payload is not base64url-encoded JSON object") }
            self.token = token
            self.header = 0..<dots.first
            self.signature = (dots.second + 1)..<count
            self.payload = payload
        }

        /// The payload's `iss` when it is a string (nil when absent or of another type),
        /// read without decoding the other claims; throws when the payload is not a JSON object.
        func unverifiedIssuer() throws(TokenRejection) -> String? {
            switch JSONParser.member("iss", ofObject: payload) {
            case .invalid: throw .malformed("payload is not base64url-encoded JSON object")
            case .found(.string(let issuer)): return issuer
            case .found, .absent: return nil
            }
        }
    }

    /// Splits `token` and finds the entry of `byIssuer` its unverified `iss` names: the routing
    /// that comes before any key work, so a token for no configured issuer costs no more.
    /// Throws `.unknownIssuer` when it names none.
    static func route<Entry>(
        _ token: String, in byIssuer: [String: Entry]
    ) throws(TokenRejection) -> (entry: Entry, parts: Parts) {
        let parts = try Parts(token)
        guard let issuer = try parts.unverifiedIssuer(), let entry = byIssuer[issuer] else { throw .unknownIssuer }
        return (entry, parts)
    }

    init(parsing token: String) throws(TokenRejection) {
        try self.init(Parts(token))
    }

    init(_ parts: Parts) throws(TokenRejection) {
        let bytes = Array(parts.token.utf8)
        guard let headerBytes = Base64URL.decode(bytes[parts.header]),
            let header = JSONParser.parseObject(headerBytes)
        else {
            throw .malformed("header is not base64url-encoded JSON object")
        }
        guard let claims = JSONParser.parseObject(parts.payload) else {
            throw .malformed("payload is not base64url-encoded JSON object")
        }
        guard let signature = Base64URL.decode(bytes[parts.signature]), !signature.isEmpty else {
            throw .malformed("signature is missing or not base64url")
        }
        self.header = header
        self.claims = claims
        self.signingInput = bytes[parts.header.lowerBound..<(parts.signature.lowerBound - 1)]
        self.signature = signature
    }
}

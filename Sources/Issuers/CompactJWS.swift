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

    init(parsing token: String) throws(TokenRejection) {
        let bytes = Array(token.utf8)
        guard bytes.count <= Self.maximumLength else {
            throw .malformed("longer than \(Self.maximumLength) bytes")
        }
        let dot = UInt8(ascii: ".")
        let parts = bytes.split(separator: dot, omittingEmptySubsequences: false)
        if parts.count == 5 { throw .malformed("encrypted tokens (JWE) are not supported") }
        guard parts.count == 3 else { throw .malformed("want 3 dot-separated parts, got \(parts.count)") }
        guard let headerBytes = Base64URL.decode(parts[0]), let header = JSONValue.parseObject(headerBytes) else {
            throw .malformed("header is not base64url-encoded JSON object")
        }
        guard let payloadBytes = Base64URL.decode(parts[1]), let claims = JSONValue.parseObject(payloadBytes) else {
            throw .malformed("payload is not base64url-encoded JSON object")
        }
        guard let signature = Base64URL.decode(parts[2]), !signature.isEmpty else {
            throw .malformed("signature is missing or not base64url")
        }
        self.header = header
        self.claims = claims
        self.signingInput = bytes[parts[0].startIndex..<parts[1].endIndex]
        self.signature = signature
    }

    /// The unverified `iss`, used only to choose which issuer verifies the token.
    var unverifiedIssuer: String? {
        if case .string(let issuer) = claims["iss"] { return issuer }
        return nil
    }
}

import Crypto
import CryptoExtras
import FoundationEssentials

/// An independent check that a token was signed by one of the fixed keys: it reads the keys
/// from PEM (not from the JWKS the verifier parses), ignores the header, and tries every
/// algorithm each key can sign with. Only accepted tokens are checked, so it may be lenient.
enum SignatureOracle {
    private static let rsa: _RSA.Signing.PublicKey? = try? .init(pemRepresentation: FixedKeys.rsaPublicPEM)
    private static let p256: P256.Signing.PublicKey? = try? .init(pemRepresentation: FixedKeys.p256PublicPEM)
    private static let p384: P384.Signing.PublicKey? = try? .init(pemRepresentation: FixedKeys.p384PublicPEM)

    static func verifiesWithFixedKeys(_ token: String) -> Bool {
        let bytes = Array(token.utf8)
        guard let lastDot = bytes.lastIndex(of: UInt8(ascii: ".")),
            let signature = decodeBase64URL(bytes[(lastDot + 1)...])
        else { return false }
        let input = Data(bytes[..<lastDot])
        if let key = p256, let ecdsa = try? P256.Signing.ECDSASignature(rawRepresentation: signature),
            key.isValidSignature(ecdsa, for: SHA256.hash(data: input))
        {
            return true
        }
        if let key = p384, let ecdsa = try? P384.Signing.ECDSASignature(rawRepresentation: signature),
            key.isValidSignature(ecdsa, for: SHA384.hash(data: input))
        {
            return true
        }
        guard let key = rsa else { return false }
        let rsaSignature = _RSA.Signing.RSASignature(rawRepresentation: signature)
        for padding in [_RSA.Signing.Padding.insecurePKCS1v1_5, .PSS] {
            if key.isValidSignature(rsaSignature, for: SHA256.hash(data: input), padding: padding)
                || key.isValidSignature(rsaSignature, for: SHA384.hash(data: input), padding: padding)
                || key.isValidSignature(rsaSignature, for: SHA512.hash(data: input), padding: padding)
            {
                return true
            }
        }
        return false
    }

    /// Lenient base64url (Foundation's decoder after translating the alphabet and padding).
    static func decodeBase64URL(_ bytes: ArraySlice<UInt8>) -> Data? {
        var text = String(decoding: bytes, as: UTF8.self)
            .replacing("-", with: "+").replacing("_", with: "/")
        while text.utf8.count % 4 != 0 { text += "=" }
        return Data(base64Encoded: text)
    }
}

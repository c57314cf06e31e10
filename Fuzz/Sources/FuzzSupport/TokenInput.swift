import Crypto
import FoundationEssentials

/// Turns fuzzer bytes into a token. A first byte of 0 or 1 marks a structured input,
/// `header JSON 0x00 claims JSON`, which is signed here with the fixed P-256 (0) or P-384 (1)
/// key: the fuzzer then reaches claim mapping, which only a valid signature unlocks. Any other
/// input is the token itself.
public enum TokenInput {
    private static let p256: P256.Signing.PrivateKey? = try? .init(pemRepresentation: FixedKeys.p256PrivatePEM)
    private static let p384: P384.Signing.PrivateKey? = try? .init(pemRepresentation: FixedKeys.p384PrivatePEM)

    public static func token(from bytes: [UInt8]) -> String {
        guard let mode = bytes.first, mode <= 1 else { return String(decoding: bytes, as: UTF8.self) }
        let rest = bytes.dropFirst()
        let separator = rest.firstIndex(of: 0) ?? rest.endIndex
        let header = encodeBase64URL(rest[..<separator])
        let claims = encodeBase64URL(rest[(separator == rest.endIndex ? separator : separator + 1)...])
        let signingInput = Data("\(header).\(claims)".utf8)
        let signature: Data
        if mode == 0, let key = p256, let signed = try? key.signature(for: SHA256.hash(data: signingInput)) {
            signature = signed.rawRepresentation
        } else if mode == 1, let key = p384, let signed = try? key.signature(for: SHA384.hash(data: signingInput)) {
            signature = signed.rawRepresentation
        } else {
            preconditionFailure("the fixed private keys do not parse")
        }
        return "\(header).\(claims).\(encodeBase64URL(signature))"
    }

    static func encodeBase64URL(_ bytes: some Collection<UInt8>) -> String {
        Data(bytes).base64EncodedString().replacing("+", with: "-").replacing("/", with: "_")
            .replacing("=", with: "")
    }
}

import Crypto
import CryptoExtras
import FoundationEssentials
import NIOConcurrencyHelpers

/// A private signing key an identity provider holds, with its public JWK. Test tokens are
/// signed here with swift-crypto directly, independently of the proxy's verifier.
public struct TestSigningKey: Sendable {
    enum Material: Sendable {
        case rsa(_RSA.Signing.PrivateKey)
        case p256(P256.Signing.PrivateKey)
        case p384(P384.Signing.PrivateKey)
        case p521(P521.Signing.PrivateKey)
    }

    public let kid: String
    let material: Material

    /// An RSA key. Generating one is slow in a debug build, so keys come from a per-process
    /// cache: the same `slot` gives the same key material; use another slot for a distinct key.
    public static func rsa(kid: String, slot: Int = 0) throws -> TestSigningKey {
        let key = try rsaKeys.withLockedValue { cache in
            if let key = cache[slot] { return key }
            let key = try _RSA.Signing.PrivateKey(keySize: .bits2048)
            cache[slot] = key
            return key
        }
        return TestSigningKey(kid: kid, material: .rsa(key))
    }

    private static let rsaKeys = NIOLockedValueBox<[Int: _RSA.Signing.PrivateKey]>([:])

    public static func p256(kid: String) -> TestSigningKey { TestSigningKey(kid: kid, material: .p256(.init())) }
    public static func p384(kid: String) -> TestSigningKey { TestSigningKey(kid: kid, material: .p384(.init())) }
    public static func p521(kid: String) -> TestSigningKey { TestSigningKey(kid: kid, material: .p521(.init())) }

    /// The algorithm this key signs with by default.
    public var defaultAlgorithm: String {
        switch material {
        case .rsa: "RS256"
        case .p256: "ES256"
        case .p384: "ES384"
        case .p521: "ES512"
        }
    }

    /// The public half as a JWK, as an IdP publishes it.
    public var publicJWK: TestJSON {
        switch material {
        case .rsa(let key):
            let primitives = try? key.publicKey.getKeyPrimitives()
            return [
                "kty": "RSA", "kid": .string(kid), "use": "sig",
                "n": .string(Base64URLText.encode(Array(primitives?.modulus ?? Data()))),
                "e": .string(Base64URLText.encode(Array(primitives?.publicExponent ?? Data()))),
            ]
        case .p256(let key): return ecJWK(curve: "P-256", raw: Array(key.publicKey.rawRepresentation))
        case .p384(let key): return ecJWK(curve: "P-384", raw: Array(key.publicKey.rawRepresentation))
        case .p521(let key): return ecJWK(curve: "P-521", raw: Array(key.publicKey.rawRepresentation))
        }
    }

    private func ecJWK(curve: String, raw: [UInt8]) -> TestJSON {
        let half = raw.count / 2
        return [
            "kty": "EC", "kid": .string(kid), "use": "sig", "crv": .string(curve),
            "x": .string(Base64URLText.encode(Array(raw[..<half]))),
            "y": .string(Base64URLText.encode(Array(raw[half...]))),
        ]
    }

    /// Signs `input` with `algorithm`; throws when the algorithm does not fit the key.
    public func sign(_ input: [UInt8], algorithm: String) throws -> [UInt8] {
        switch (material, algorithm) {
        case (.rsa(let key), "RS256"):
            Array(try key.signature(for: SHA256.hash(data: input), padding: .insecurePKCS1v1_5).rawRepresentation)
        case (.rsa(let key), "RS384"):
            Array(try key.signature(for: SHA384.hash(data: input), padding: .insecurePKCS1v1_5).rawRepresentation)
        case (.rsa(let key), "RS512"):
            Array(try key.signature(for: SHA512.hash(data: input), padding: .insecurePKCS1v1_5).rawRepresentation)
        case (.rsa(let key), "PS256"):
            Array(try key.signature(for: SHA256.hash(data: input), padding: .PSS).rawRepresentation)
        case (.rsa(let key), "PS384"):
            Array(try key.signature(for: SHA384.hash(data: input), padding: .PSS).rawRepresentation)
        case (.rsa(let key), "PS512"):
            Array(try key.signature(for: SHA512.hash(data: input), padding: .PSS).rawRepresentation)
        case (.p256(let key), "ES256"): Array(try key.signature(for: SHA256.hash(data: input)).rawRepresentation)
        case (.p384(let key), "ES384"): Array(try key.signature(for: SHA384.hash(data: input)).rawRepresentation)
        case (.p521(let key), "ES512"): Array(try key.signature(for: SHA512.hash(data: input)).rawRepresentation)
        default: throw TestbedError("key \(kid) cannot sign \(algorithm)")
        }
    }

    /// A check of this key's RS256 or ES256 signatures with swift-crypto alone, the public key
    /// derived once and kept (as the proxy keeps a JWKS key, so BoringSSL's per-key Montgomery
    /// state is reused): the floor verify-bench measures a full token verification against.
    public func signatureCheck(algorithm: String) throws -> @Sendable (_ signature: [UInt8], _ input: [UInt8]) -> Bool {
        switch (material, algorithm) {
        case (.rsa(let key), "RS256"):
            let publicKey = key.publicKey
            return { signature, input in
                publicKey.isValidSignature(
                    .init(rawRepresentation: signature), for: SHA256.hash(data: input), padding: .insecurePKCS1v1_5)
            }
        case (.p256(let key), "ES256"):
            let publicKey = key.publicKey
            return { signature, input in
                (try? P256.Signing.ECDSASignature(rawRepresentation: signature)).map {
                    publicKey.isValidSignature($0, for: SHA256.hash(data: input))
                } ?? false
            }
        default: throw TestbedError("key \(kid) has no signature check for \(algorithm)")
        }
    }

    /// The public key's SubjectPublicKeyInfo DER, for the "HS256 keyed with the public key" attack.
    public var publicKeyDER: [UInt8] {
        switch material {
        case .rsa(let key): Array(key.publicKey.derRepresentation)
        case .p256(let key): Array(key.publicKey.derRepresentation)
        case .p384(let key): Array(key.publicKey.derRepresentation)
        case .p521(let key): Array(key.publicKey.derRepresentation)
        }
    }

    /// The public key as PEM text.
    public var publicKeyPEM: String {
        switch material {
        case .rsa(let key): key.publicKey.pemRepresentation
        case .p256(let key): key.publicKey.pemRepresentation
        case .p384(let key): key.publicKey.pemRepresentation
        case .p521(let key): key.publicKey.pemRepresentation
        }
    }
}

/// Builds compact JWS tokens from a header and claims, signing with any key and algorithm,
/// including wrong ones, so tests can mint exactly the hostile token they need.
public enum TokenMinter {
    /// `header` defaults to `{"alg": key's algorithm, "kid": key.kid}`.
    public static func mint(claims: TestJSON, key: TestSigningKey, header: TestJSON? = nil) throws -> String {
        let header = header ?? ["alg": .string(key.defaultAlgorithm), "kid": .string(key.kid), "typ": "JWT"]
        let signingInput = encodePart(header.serialized) + "." + encodePart(claims.serialized)
        guard case .string(let algorithm) = header["alg"] ?? .null else {
            throw TestbedError("the header has no alg to sign with")
        }
        let signature = try key.sign(Array(signingInput.utf8), algorithm: algorithm)
        return signingInput + "." + Base64URLText.encode(signature)
    }

    /// A token with the given signature bytes (or none), for `alg: none` and forged signatures.
    public static func assemble(header: TestJSON, claims: TestJSON, signature: [UInt8]) -> String {
        encodePart(header.serialized) + "." + encodePart(claims.serialized) + "." + Base64URLText.encode(signature)
    }

    /// A token signed with HMAC-SHA256 keyed by `secret` (the classic algorithm-confusion attack).
    public static func mintHS256(claims: TestJSON, secret: [UInt8], kid: String?) -> String {
        var header: TestJSON = ["alg": "HS256", "typ": "JWT"]
        if let kid { header = header.setting("kid", .string(kid)) }
        let signingInput = encodePart(header.serialized) + "." + encodePart(claims.serialized)
        let mac = HMAC<SHA256>.authenticationCode(for: Array(signingInput.utf8), using: SymmetricKey(data: secret))
        return signingInput + "." + Base64URLText.encode(Array(mac))
    }

    public static func encodePart(_ json: String) -> String {
        Base64URLText.encode(Array(json.utf8))
    }
}

/// Unpadded base64url, written here so that the test side shares no code with the verifier.
public enum Base64URLText {
    public static func encode(_ bytes: [UInt8]) -> String {
        Data(bytes).base64EncodedString()
            .replacing("+", with: "-")
            .replacing("/", with: "_")
            .replacing("=", with: "")
    }
}

public struct TestbedError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

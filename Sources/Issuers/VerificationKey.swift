import Config
import Crypto
import CryptoExtras
import FoundationEssentials

/// A public key from an issuer's JWKS, able to check the signatures of the algorithms that
/// fit its type: RSA keys for RS* and PS*, each EC curve for its one ES* algorithm.
enum VerificationKey: Sendable {
    case rsa(_RSA.Signing.PublicKey)
    case p256(P256.Signing.PublicKey)
    case p384(P384.Signing.PublicKey)
    case p521(P521.Signing.PublicKey)

    /// Whether a signature made with `algorithm` is checked with this key: the key type must
    /// fit the algorithm, so an RSA key can never vouch for an ES256 token or the reverse.
    func fits(_ algorithm: SigningAlgorithm) -> Bool {
        switch (self, algorithm) {
        case (.rsa, .rs256), (.rsa, .rs384), (.rsa, .rs512), (.rsa, .ps256), (.rsa, .ps384), (.rsa, .ps512):
            true
        case (.p256, .es256), (.p384, .es384), (.p521, .es512):
            true
        default:
            false
        }
    }

    /// Checks `signature` over `signingInput`; false for any mismatch, malformed signature or misfit.
    func isValidSignature(_ signature: [UInt8], over signingInput: some DataProtocol, algorithm: SigningAlgorithm)
        -> Bool
    {
        switch (self, algorithm) {
        case (.rsa(let key), .rs256):
            key.isValidSignature(
                .init(rawRepresentation: signature), for: SHA256.hash(data: signingInput), padding: .insecurePKCS1v1_5)
        case (.rsa(let key), .rs384):
            key.isValidSignature(
                .init(rawRepresentation: signature), for: SHA384.hash(data: signingInput), padding: .insecurePKCS1v1_5)
        case (.rsa(let key), .rs512):
            key.isValidSignature(
                .init(rawRepresentation: signature), for: SHA512.hash(data: signingInput), padding: .insecurePKCS1v1_5)
        case (.rsa(let key), .ps256):
            key.isValidSignature(
                .init(rawRepresentation: signature), for: SHA256.hash(data: signingInput), padding: .PSS)
        case (.rsa(let key), .ps384):
            key.isValidSignature(
                .init(rawRepresentation: signature), for: SHA384.hash(data: signingInput), padding: .PSS)
        case (.rsa(let key), .ps512):
            key.isValidSignature(
                .init(rawRepresentation: signature), for: SHA512.hash(data: signingInput), padding: .PSS)
        case (.p256(let key), .es256):
            (try? P256.Signing.ECDSASignature(rawRepresentation: signature)).map {
                key.isValidSignature($0, for: SHA256.hash(data: signingInput))
            } ?? false
        case (.p384(let key), .es384):
            (try? P384.Signing.ECDSASignature(rawRepresentation: signature)).map {
                key.isValidSignature($0, for: SHA384.hash(data: signingInput))
            } ?? false
        case (.p521(let key), .es512):
            (try? P521.Signing.ECDSASignature(rawRepresentation: signature)).map {
                key.isValidSignature($0, for: SHA512.hash(data: signingInput))
            } ?? false
        default:
            false
        }
    }
}

/// An issuer's usable signing keys, looked up by `kid`.
struct KeySet: Sendable {
    struct Entry: Sendable {
        var keyID: String?
        var key: VerificationKey
    }

    let entries: [Entry]
    private let byKeyID: [String: [VerificationKey]]

    init(entries: [Entry]) {
        self.entries = entries
        self.byKeyID = Dictionary(
            grouping: entries.compactMap { entry in entry.keyID.map { ($0, entry.key) } }, by: \.0
        )
        .mapValues { $0.map(\.1) }
    }

    /// The keys a token may have been signed with: those named by its `kid`, or every key
    /// when it names none (as go-oidc tries them all).
    func candidates(keyID: String?) -> [VerificationKey] {
        guard let keyID else { return entries.map(\.key) }
        return byKeyID[keyID] ?? []
    }

    /// Parses a JWKS document. Keys that cannot verify signatures (encryption keys, unknown
    /// types, malformed or too-small parameters) are skipped and described in `skipped`.
    static func parse(jwks bytes: [UInt8]) throws(KeySetError) -> (KeySet, skipped: [String]) {
        struct Document: Decodable { var keys: [JWK]? }
        struct JWK: Decodable {
            var kty: String?
            var kid: String?
            var use: String?
            var crv: String?
            var n: String?
            var e: String?
            var x: String?
            var y: String?
        }
        let document: Document
        do {
            document = try JSONDecoder().decode(Document.self, from: Data(bytes))
        } catch {
            throw KeySetError("the JWKS is not valid JSON of the form {\"keys\": [...]}")
        }
        guard let keys = document.keys else { throw KeySetError("the JWKS has no \"keys\" array") }
        var entries: [Entry] = []
        var skipped: [String] = []
        for (index, jwk) in keys.enumerated() {
            let label = "key \(index) (kid \(jwk.kid.map { "\"\($0)\"" } ?? "none"))"
            if let use = jwk.use, use != "sig" {
                skipped.append("\(label): use \"\(use)\" is not for signatures")
                continue
            }
            do {
                entries.append(
                    Entry(
                        keyID: jwk.kid, key: try makeKey(jwk.kty, crv: jwk.crv, n: jwk.n, e: jwk.e, x: jwk.x, y: jwk.y))
                )
            } catch {
                skipped.append("\(label): \(error.message)")
            }
        }
        guard !entries.isEmpty else {
            throw KeySetError(
                "the JWKS has no usable signing key" + (skipped.isEmpty ? "" : ": " + skipped.joined(separator: "; ")))
        }
        return (KeySet(entries: entries), skipped)
    }

    private static func makeKey(_ kty: String?, crv: String?, n: String?, e: String?, x: String?, y: String?)
        throws(KeySetError) -> VerificationKey
    {
        func bytes(_ field: String, _ value: String?) throws(KeySetError) -> [UInt8] {
            guard let value, let decoded = Base64URL.decode(value.utf8), !decoded.isEmpty else {
                throw KeySetError("\"\(field)\" is missing or not base64url")
            }
            return decoded
        }
        switch kty {
        case "RSA":
            let modulus = try bytes("n", n)
            let exponent = try bytes("e", e)
            do {
                return .rsa(try _RSA.Signing.PublicKey(n: modulus, e: exponent))
            } catch {
                throw KeySetError("not a usable RSA key (2048 bits or more are required)")
            }
        case "EC":
            let point = [0x04] + (try bytes("x", x)) + (try bytes("y", y))
            do {
                switch crv {
                case "P-256": return .p256(try P256.Signing.PublicKey(x963Representation: point))
                case "P-384": return .p384(try P384.Signing.PublicKey(x963Representation: point))
                case "P-521": return .p521(try P521.Signing.PublicKey(x963Representation: point))
                default: throw KeySetError("curve \(crv.map { "\"\($0)\"" } ?? "(none)") is not supported")
                }
            } catch let error as KeySetError {
                throw error
            } catch {
                throw KeySetError("the point is not on curve \(crv ?? "")")
            }
        default:
            throw KeySetError("key type \(kty.map { "\"\($0)\"" } ?? "(none)") is not supported")
        }
    }
}

struct KeySetError: Error, Sendable {
    var message: String
    init(_ message: String) { self.message = message }
}

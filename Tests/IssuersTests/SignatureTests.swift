import Config
import Foundation
import Testbed
import Testing

@testable import Issuers

@Suite("Token structure, algorithms and signatures")
struct SignatureTests {
    @Test(
        "every supported algorithm verifies with a key of its type",
        arguments: ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"])
    func rsaAlgorithms(algorithm: String) throws {
        let fixture = try VerifierFixture()
        let token = try fixture.mint(header: ["alg": .string(algorithm), "kid": "rsa-1"])
        #expect(fixture.verify(token).identity?.username == "alice@example.com")
    }

    @Test("ES256, ES384 and ES512 verify with P-256, P-384 and P-521 keys")
    func ecAlgorithms() throws {
        let fixture = try VerifierFixture(keys: [.p256(kid: "p256"), .p384(kid: "p384"), .p521(kid: "p521")])
        for key in fixture.keys {
            #expect(fixture.verify(try fixture.mint(key: key)).identity != nil, "\(key.kid)")
        }
    }

    @Test("a token without kid is tried against every key, as go-oidc does")
    func noKeyID() throws {
        let fixture = try VerifierFixture(keys: [.rsa(kid: "a"), .rsa(kid: "b", slot: 1)])
        let token = try fixture.mint(key: fixture.keys[1], header: ["alg": "RS256"])
        #expect(fixture.verify(token).identity != nil)
    }

    @Test("a kid no key has: unknown key")
    func unknownKeyID() throws {
        let fixture = try VerifierFixture()
        let token = try fixture.mint(header: ["alg": "RS256", "kid": "other"])
        #expect(fixture.verify(token).rejection == .unknownKey)
    }

    @Test("an RSA signature presented as PSS, or the reverse, does not verify")
    func paddingConfusion() throws {
        let fixture = try VerifierFixture()
        let token = try fixture.mint(header: ["alg": "RS256", "kid": "rsa-1"])
        let parts = token.split(separator: ".")
        let header = TokenMinter.encodePart(#"{"alg":"PS256","kid":"rsa-1"}"#)
        let relabelled = "\(header).\(parts[1]).\(parts[2])"
        #expect(fixture.verify(relabelled).rejection == .invalidSignature)
    }

    @Test("an ES256 header naming an RSA key finds no key that fits")
    func keyTypeMustFitAlgorithm() throws {
        let fixture = try VerifierFixture(keys: [.rsa(kid: "k"), .p256(kid: "e")])
        let claims = VerifierFixture.claims
        let token = try TokenMinter.mint(claims: claims, key: fixture.keys[1], header: ["alg": "ES256", "kid": "k"])
        #expect(fixture.verify(token).rejection == .unknownKey)
    }

    @Test(
        "alg none, HMAC and unknown algorithms are never accepted",
        arguments: ["none", "HS256", "HS512", "EdDSA", "RS1"])
    func disallowedAlgorithms(algorithm: String) throws {
        let fixture = try VerifierFixture()
        let token = TokenMinter.assemble(
            header: ["alg": .string(algorithm), "kid": "rsa-1"], claims: VerifierFixture.claims, signature: [0x01])
        #expect(fixture.verify(token).rejection == .algorithmNotAllowed(algorithm))
    }

    @Test("HS256 keyed with the RSA public key (algorithm confusion) is refused")
    func hmacConfusion() throws {
        let fixture = try VerifierFixture()
        let token = TokenMinter.mintHS256(
            claims: VerifierFixture.claims, secret: fixture.keys[0].publicKeyDER, kid: "rsa-1")
        #expect(fixture.verify(token).rejection == .algorithmNotAllowed("HS256"))
    }

    @Test("an algorithm outside the issuer's signingAlgorithms is refused")
    func restrictedAlgorithms() throws {
        let fixture = try VerifierFixture(configure: { $0.signingAlgorithms = [.es256] })
        #expect(fixture.verify(try fixture.mint()).rejection == .algorithmNotAllowed("RS256"))
    }

    @Test("a changed payload breaks the signature")
    func tamperedPayload() throws {
        let fixture = try VerifierFixture()
        let parts = try fixture.mint().split(separator: ".")
        let forged = TokenMinter.encodePart(VerifierFixture.claims.setting("email", "mallory@example.com").serialized)
        #expect(fixture.verify("\(parts[0]).\(forged).\(parts[2])").rejection == .invalidSignature)
    }

    @Test("a crit header is refused, as go-jose does")
    func critHeader() throws {
        let fixture = try VerifierFixture()
        let token = try fixture.mint(header: ["alg": "RS256", "kid": "rsa-1", "crit": ["exp"], "exp": 1])
        #expect(fixture.verify(token).rejection == .unsupportedHeader("crit"))
    }

    @Test(
        "structurally broken tokens are malformed",
        arguments: [
            "", "abc", "a.b", "a.b.c.d", "eyJhbGciOiJSUzI1NiJ9.e30", "eyJhbGciOiJSUzI1NiJ9.e30=.c2ln",
            "eyJhbGciOiJSUzI1NiJ9.W10.c2ln", "bm90IGpzb24.e30.c2ln", "eyJhbGciOiJSUzI1NiJ9.e30.",
            "eyJhbGciOiJSUzI1NiJ9.e30.c2ln.ZXh0cmE.bW9yZQ", "eyJhbGciOiJSUzI1NiJ9 .e30.c2ln",
        ])
    func malformed(token: String) throws {
        let fixture = try VerifierFixture()
        guard case .malformed = fixture.verify(token).rejection else {
            Issue.record("\(token) was not refused as malformed: \(fixture.verify(token))")
            return
        }
    }

    @Test("a token longer than 64 KiB is refused before it is decoded")
    func oversized() throws {
        let fixture = try VerifierFixture()
        let padding = String(repeating: "x", count: 100_000)
        let token = try fixture.mint(VerifierFixture.claims.setting("pad", .string(padding)))
        guard case .malformed = fixture.verify(token).rejection else {
            Issue.record("a 100 KB token was not refused")
            return
        }
    }

    @Test("base64url: canonical unpadded text only")
    func base64url() {
        #expect(Base64URL.decode("aGk".utf8) == Array("hi".utf8))
        #expect(Base64URL.decode("aGk=".utf8) == nil)
        #expect(Base64URL.decode("aGl".utf8) == nil, "non-zero leftover bits")
        #expect(Base64URL.decode("a+/=".utf8) == nil)
        #expect(Base64URL.decode("-_8".utf8) == [0xFB, 0xFF])
        #expect(Base64URL.decode("A".utf8) == nil)
        for length in 0..<40 {
            let bytes = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }
            #expect(Base64URL.decode(Base64URL.encode(bytes).utf8) == bytes)
        }
        // Leftover bits in both tail lengths: two characters carry 4 spare bits, three carry 2.
        #expect(Base64URL.decode("QQ".utf8) == [0x41])
        #expect(Base64URL.decode("QR".utf8) == nil)
        #expect(Base64URL.decode("QUE".utf8) == [0x41, 0x41])
        #expect(Base64URL.decode("QUF".utf8) == nil)
        // A byte outside the alphabet anywhere: in a full block, and in each tail position.
        #expect(Base64URL.decode("QUFB QUFB".utf8) == nil)
        #expect(Base64URL.decode("QUFBQ.".utf8) == nil)
        #expect(Base64URL.decode("QUFB\u{00}Q".utf8) == nil)
        #expect(Base64URL.decode([0x51, 0x55, 0xFF]) == nil)
    }

    @Test("base64url decodes what Foundation decodes, and refuses what it refuses")
    func base64urlAgainstFoundation() {
        var generator = SystemRandomNumberGenerator()
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)
        for _ in 0..<2000 {
            let length = Int.random(in: 0..<64, using: &generator)
            var text = (0..<length).map { _ in alphabet.randomElement(using: &generator)! }
            if Bool.random(using: &generator), !text.isEmpty {
                text[Int.random(in: 0..<text.count, using: &generator)] = UInt8.random(in: 0...255, using: &generator)
            }
            // Foundation wants standard base64 with padding; canonical means it re-encodes the same.
            var standard = text.map {
                $0 == UInt8(ascii: "-") ? UInt8(ascii: "+") : $0 == UInt8(ascii: "_") ? UInt8(ascii: "/") : $0
            }
            let hasStandardOnlyBytes = text.contains {
                $0 == UInt8(ascii: "+") || $0 == UInt8(ascii: "/") || $0 == UInt8(ascii: "=")
            }
            standard += Array(repeating: UInt8(ascii: "="), count: (4 - standard.count % 4) % 4)
            let expected =
                hasStandardOnlyBytes
                ? nil
                : Data(base64Encoded: Data(standard)).flatMap { decoded in
                    Base64URL.encode(decoded) == String(decoding: text, as: UTF8.self) ? Array(decoded) : nil
                }
            #expect(Base64URL.decode(text) == expected, "\(String(decoding: text, as: UTF8.self).debugDescription)")
        }
    }
}

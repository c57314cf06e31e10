import Config
import Testbed
import Testing

@testable import Issuers

/// Where kube-apiserver's behaviour comes from Go's `encoding/json` and go-oidc's types rather
/// than from an explicit check: the same input must get the same verdict here.
@Suite("Go decoding semantics of claims and headers")
struct GoSemanticsTests {
    let fixture: VerifierFixture
    let now = VerifierFixture.now

    init() throws {
        fixture = try VerifierFixture()
    }

    private func verify(_ claims: TestJSON) throws -> Result<Identity, TokenRejection> {
        fixture.verify(try fixture.mint(claims))
    }

    private func with(_ key: String, _ value: TestJSON) -> TestJSON {
        VerifierFixture.claims.setting(key, value)
    }

    /// Signs raw claims text (duplicate keys, odd encodings) exactly as written.
    private func verifyRaw(_ claims: String, header: String = #"{"alg":"RS256","kid":"rsa-1"}"#) throws
        -> Result<Identity, TokenRejection>
    {
        let signingInput = TokenMinter.encodePart(header) + "." + TokenMinter.encodePart(claims)
        let signature = try fixture.keys[0].sign(Array(signingInput.utf8), algorithm: "RS256")
        return fixture.verify(signingInput + "." + Base64URLText.encode(signature))
    }

    @Test("iat: null or another type fails go-oidc's unmarshal; its value is not checked")
    func issuedAt() throws {
        #expect(try verify(with("iat", nil)).rejection == .invalidClaim("iat is not a number"))
        #expect(try verify(with("iat", ["x"])).rejection == .invalidClaim("iat is not a number"))
        #expect(try verify(with("iat", .int(now + 86400))).identity != nil, "an iat in the future is accepted")
        #expect(try verify(with("iat", "12")).identity != nil, "a numeric string is a json.Number")
        #expect(try verify(VerifierFixture.claims.removing("iat")).identity != nil)
    }

    @Test("exp: numeric strings, exponents and fractions read as go-oidc's jsonTime does")
    func expiryNumbers() throws {
        #expect(try verify(with("exp", .string("\(now + 60).0"))).identity != nil)
        #expect(try verify(with("exp", .double(1.8e9 + 60))).identity != nil)
        #expect(try verify(with("exp", " 1800000060")).rejection == .invalidClaim("exp is not a number"))
        #expect(try verify(with("exp", "0x6B49D200")).rejection == .invalidClaim("exp is not a number"))
        #expect(try verify(with("exp", "")).rejection == .invalidClaim("exp is not a number"))
    }

    @Test("huge numbers: beyond float64 fails to unmarshal; beyond int64 is a time long past")
    func hugeTimes() throws {
        #expect(try verifyRaw(rawClaims(exp: "1e400")).rejection == .invalidClaim("exp is not a number"))
        #expect(try verify(with("exp", "1e400")).rejection == .invalidClaim("exp is not a number"))
        #expect(try verifyRaw(rawClaims(exp: "1e19")).rejection == .expired)
        #expect(try verifyRaw(rawClaims(exp: "-1e19")).rejection == .expired)
        #expect(
            try verifyRaw(rawClaims(exp: String(repeating: "9", count: 400))).rejection
                == .invalidClaim("exp is not a number"))
        #expect(try verifyRaw(rawClaims(exp: "\(now + 60)", extra: #""nbf": 1e19,"#)).identity != nil)
    }

    private func rawClaims(exp: String, extra: String = "") -> String {
        #"{"iss":"https://issuer.example.com","aud":"kubernetes","email":"alice@example.com",\#(extra)"exp":\#(exp)}"#
    }

    @Test("nbf: null is no nbf (go-oidc's *jsonTime), another type fails")
    func notBeforeNull() throws {
        #expect(try verify(with("nbf", nil)).identity != nil)
        #expect(try verify(with("nbf", true)).rejection == .invalidClaim("nbf is not a number"))
    }

    @Test("duplicate keys: the last one wins, as in Go")
    func duplicateKeys() throws {
        let expiredLast =
            #"{"iss":"https://issuer.example.com","aud":"kubernetes","email":"alice@example.com","#
            + #""exp":\#(now + 60),"exp":\#(now - 60)}"#
        #expect(try verifyRaw(expiredLast).rejection == .expired)
        let validLast =
            #"{"iss":"https://issuer.example.com","aud":"kubernetes","email":"mallory@example.com","#
            + #""email":"alice@example.com","exp":\#(now - 60),"exp":\#(now + 60)}"#
        #expect(try verifyRaw(validLast).identity?.username == "alice@example.com")
        let issuerLast =
            #"{"iss":"https://issuer.example.com","iss":"https://other.example.com","#
            + #""aud":"kubernetes","email":"alice@example.com","exp":\#(now + 60)}"#
        #expect(try verifyRaw(issuerLast).rejection == .unknownIssuer)
        let algorithmLast = #"{"alg":"HS256","alg":"RS256","kid":"rsa-1"}"#
        #expect(try verifyRaw(rawClaims(exp: "\(now + 60)"), header: algorithmLast).identity != nil)
    }

    @Test("null where Go unmarshals into a string is the empty string")
    func nullStrings() throws {
        #expect(try verify(with("groups", ["a", nil])).identity?.groups == ["a", ""])
        #expect(try verify(with("aud", ["kubernetes", nil])).identity != nil)
        #expect(try verify(with("aud", nil)).rejection == .audienceMismatch)
        #expect(try verify(with("sub", nil)).identity != nil)
        let uid = try VerifierFixture(configure: { $0.claimMappings.uidClaim = "sub" })
        #expect(uid.verify(try uid.mint(VerifierFixture.claims.setting("sub", nil))).identity?.uid == "")
    }

    @Test("a required claim whose value is null reads as the empty string, which does not match")
    func requiredClaimNull() throws {
        let fixture = try VerifierFixture(configure: {
            $0.claimValidationRules = [ClaimValidationRule(claim: "hd", requiredValue: "example.com")]
        })
        let token = try fixture.mint(VerifierFixture.claims.setting("hd", nil))
        #expect(fixture.verify(token).rejection == .claimRuleFailed(claim: "hd"))
    }

    @Test("a required claim is checked after the mapping, as kube-apiserver orders them")
    func requiredClaimOrder() throws {
        let fixture = try VerifierFixture(configure: {
            $0.claimValidationRules = [ClaimValidationRule(claim: "hd", requiredValue: "example.com")]
        })
        let token = try fixture.mint(VerifierFixture.claims.removing("email"))
        #expect(fixture.verify(token).rejection == .usernameClaimMissing("email"))
    }

    @Test("an empty kid is no kid: every key is tried, as go-oidc does")
    func emptyKeyID() throws {
        let fixture = try VerifierFixture(keys: [.rsa(kid: "a"), .rsa(kid: "b", slot: 1)])
        let token = try fixture.mint(key: fixture.keys[1], header: ["alg": "RS256", "kid": ""])
        #expect(fixture.verify(token).identity != nil)
        let nullKeyID = try fixture.mint(key: fixture.keys[1], header: ["alg": "RS256", "kid": nil])
        #expect(fixture.verify(nullKeyID).identity != nil)
    }

    @Test("the token's iss: the google special case is go-oidc's only exception")
    func googleOnly() throws {
        let google = try VerifierFixture(configure: { $0.url = "https://accounts.google.com" })
        let schemeless = VerifierFixture.claims.setting("iss", "accounts.google.com")
        #expect(google.verify(try google.mint(schemeless)).identity != nil)
        let full = VerifierFixture.claims.setting("iss", "https://accounts.google.com")
        #expect(google.verify(try google.mint(full)).identity != nil)
        #expect(try verify(with("iss", "issuer.example.com")).rejection == .unknownIssuer)
    }

    @Test("_claim_names and _claim_sources must have go-oidc's types even when groups are not mapped")
    func distributedClaimShapes() throws {
        #expect(try verify(with("_claim_names", 5)).rejection == .invalidClaim("_claim_names is not a map of strings"))
        #expect(
            try verify(with("_claim_names", ["groups": 1])).rejection
                == .invalidClaim("_claim_names is not a map of strings"))
        #expect(
            try verify(with("_claim_names", ["groups": ""]).setting("_claim_sources", ["": nil])).rejection
                == .invalidClaim("_claim_names has an empty source"))
        #expect(
            try verify(with("_claim_sources", ["s": ["endpoint": 3]])).rejection
                == .invalidClaim("_claim_sources.endpoint is not a string"))
        #expect(
            try verify(with("_claim_sources", ["s": "x"])).rejection
                == .invalidClaim("_claim_sources is not a map of objects"))
        #expect(try verify(with("_claim_names", nil).setting("_claim_sources", nil)).identity != nil)
    }
}

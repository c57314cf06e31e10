import Config
import Testbed
import Testing

@testable import Issuers

/// The claim checks and mappings of kube-apiserver's OIDC authenticator (and go-oidc beneath
/// it), case by case; where SPEC.md is stricter, the case says so.
@Suite("Standard claims, claim rules and identity mapping")
struct ClaimTests {
    let fixture: VerifierFixture
    let now = VerifierFixture.now

    init() throws {
        fixture = try VerifierFixture()
    }

    private func verify(_ claims: TestJSON, offset: Int = 0) throws -> Result<Identity, TokenRejection> {
        fixture.verify(try fixture.mint(claims), offset: offset)
    }

    private func with(_ key: String, _ value: TestJSON) -> TestJSON {
        VerifierFixture.claims.setting(key, value)
    }

    @Test("a valid token maps email and groups verbatim")
    func validToken() throws {
        let identity = try #require(try verify(VerifierFixture.claims).identity)
        #expect(identity.username == "alice@example.com")
        #expect(identity.groups == ["dev"])
        #expect(identity.uid == nil)
        #expect(identity.expiresAt == Double(now + 3600))
    }

    @Test("exp: required, no leeway; a token expiring this second is still valid")
    func expiry() throws {
        #expect(try verify(VerifierFixture.claims.removing("exp")).rejection == .expired)
        // go-oidc fails to unmarshal a null exp (its jsonTime reads null as an empty number).
        #expect(try verify(with("exp", nil)).rejection == .invalidClaim("exp is not a number"))
        #expect(try verify(with("exp", .int(now - 1))).rejection == .expired)
        #expect(try verify(with("exp", .int(now))).identity != nil)
        #expect(try verify(VerifierFixture.claims, offset: 3601).rejection == .expired)
    }

    @Test("exp as go-oidc reads it: a number, fractional seconds truncated, or a numeric string")
    func expiryEncodings() throws {
        #expect(try verify(with("exp", .double(Double(now) + 0.9))).identity != nil)
        #expect(try verify(with("exp", .string(String(now + 60)))).identity != nil)
        #expect(try verify(with("exp", "soon")).rejection == .invalidClaim("exp is not a number"))
        #expect(try verify(with("exp", true)).rejection == .invalidClaim("exp is not a number"))
    }

    @Test("nbf: 60 seconds of leeway")
    func notBefore() throws {
        #expect(try verify(with("nbf", .int(now + 59))).identity != nil)
        #expect(try verify(with("nbf", .int(now + 61))).rejection == .notYetValid)
        #expect(try verify(with("nbf", nil)).identity != nil)
    }

    @Test("iss must be the issuer's URL exactly (a trailing slash matters)")
    func issuer() throws {
        #expect(try verify(with("iss", "https://issuer.example.com/")).rejection == .unknownIssuer)
        #expect(try verify(with("iss", 42)).rejection == .invalidClaim("iss is not a string"))
    }

    @Test("aud: a string or a list, which must contain one of the audiences")
    func audience() throws {
        #expect(try verify(with("aud", ["other", "kubernetes"])).identity != nil)
        #expect(try verify(with("aud", "other")).rejection == .audienceMismatch)
        #expect(try verify(with("aud", [])).rejection == .audienceMismatch)
        #expect(try verify(VerifierFixture.claims.removing("aud")).rejection == .audienceMismatch)
        #expect(try verify(with("aud", 7)).rejection == .invalidClaim("aud is not a string or a list of strings"))
        #expect(
            try verify(with("aud", ["kubernetes", 7])).rejection
                == .invalidClaim("aud is not a string or a list of strings"))
    }

    @Test("several audiences (MatchAny): any one of them is enough")
    func matchAnyAudience() throws {
        let fixture = try VerifierFixture(configure: { $0.audiences = ["a", "b"] })
        let token = try fixture.mint(VerifierFixture.claims.setting("aud", "b"))
        #expect(fixture.verify(token).identity != nil)
    }

    @Test("email_verified, when present with the email username claim, must be boolean true")
    func emailVerified() throws {
        #expect(try verify(VerifierFixture.claims.removing("email_verified")).identity != nil)
        #expect(try verify(with("email_verified", false)).rejection == .emailNotVerified)
        #expect(try verify(with("email_verified", nil)).rejection == .emailNotVerified)
        #expect(
            try verify(with("email_verified", "true")).rejection == .invalidClaim("email_verified is not a boolean"))
    }

    @Test("email_verified is not consulted when the username comes from another claim")
    func emailVerifiedOnlyForEmail() throws {
        let fixture = try VerifierFixture(configure: { $0.claimMappings.usernameClaim = "sub" })
        let token = try fixture.mint(VerifierFixture.claims.setting("email_verified", false))
        #expect(fixture.verify(token).identity?.username == "user-1")
    }

    @Test("the username claim must be a non-empty string (empty is refused: SPEC §3.5, stricter)")
    func username() throws {
        #expect(try verify(VerifierFixture.claims.removing("email")).rejection == .usernameClaimMissing("email"))
        #expect(try verify(with("email", "")).rejection == .usernameClaimMissing("email"))
        #expect(try verify(with("email", nil)).rejection == .usernameClaimMissing("email"))
        #expect(try verify(with("email", 12)).rejection == .invalidClaim("username claim email is not a string"))
        #expect(try verify(with("email", ["a"])).rejection == .invalidClaim("username claim email is not a string"))
    }

    @Test("groups: a string, a list of strings, null or absent; anything else is refused")
    func groups() throws {
        #expect(try verify(with("groups", "solo")).identity?.groups == ["solo"])
        #expect(try verify(with("groups", ["a", "b"])).identity?.groups == ["a", "b"])
        #expect(try verify(with("groups", [])).identity?.groups == [])
        #expect(try verify(with("groups", nil)).identity?.groups == [])
        #expect(try verify(VerifierFixture.claims.removing("groups")).identity?.groups == [])
        #expect(
            try verify(with("groups", 5)).rejection
                == .invalidClaim("groups claim groups is not a string or a list of strings"))
        #expect(
            try verify(with("groups", ["a", 5])).rejection
                == .invalidClaim("groups claim groups is not a string or a list of strings"))
        #expect(
            try verify(with("groups", ["a": "b"])).rejection
                == .invalidClaim("groups claim groups is not a string or a list of strings"))
    }

    @Test("prefixes are added to the username and every group")
    func prefixes() throws {
        let fixture = try VerifierFixture(configure: {
            $0.claimMappings.usernamePrefix = "oidc:"
            $0.claimMappings.groupsPrefix = "idp-a:"
        })
        let identity = try #require(
            fixture.verify(try fixture.mint(VerifierFixture.claims.setting("groups", ["x", "y"]))).identity)
        #expect(identity.username == "oidc:alice@example.com")
        #expect(identity.groups == ["idp-a:x", "idp-a:y"])
    }

    @Test("a uid mapping yields the uid; a missing uid claim is refused, as kube-apiserver does")
    func uid() throws {
        let fixture = try VerifierFixture(configure: { $0.claimMappings.uidClaim = "sub" })
        #expect(fixture.verify(try fixture.mint()).identity?.uid == "user-1")
        #expect(
            fixture.verify(try fixture.mint(VerifierFixture.claims.removing("sub"))).rejection
                == .uidClaimMissing("sub"))
    }

    @Test("claim validation rules: the claim must be a string equal to the required value")
    func claimRules() throws {
        let fixture = try VerifierFixture(configure: {
            $0.claimValidationRules = [ClaimValidationRule(claim: "hd", requiredValue: "example.com")]
        })
        #expect(fixture.verify(try fixture.mint(VerifierFixture.claims.setting("hd", "example.com"))).identity != nil)
        #expect(
            fixture.verify(try fixture.mint(VerifierFixture.claims.setting("hd", "evil.com"))).rejection
                == .claimRuleFailed(claim: "hd"))
        #expect(fixture.verify(try fixture.mint(VerifierFixture.claims)).rejection == .claimRuleFailed(claim: "hd"))
        #expect(
            fixture.verify(try fixture.mint(VerifierFixture.claims.setting("hd", true))).rejection
                == .claimRuleFailed(claim: "hd"))
    }

    @Test(
        "a control character in a mapped value is refused, never sent as a header",
        arguments: ["a\r\nImpersonate-Group: system:masters", "a\nb", "a\u{0}b", "a\u{7F}", "tab\there"])
    func controlCharacters(value: String) throws {
        #expect(try verify(with("email", .string(value))).rejection == .controlCharacter(field: "username"))
        #expect(try verify(with("groups", ["ok", .string(value)])).rejection == .controlCharacter(field: "groups"))
        let fixture = try VerifierFixture(configure: { $0.claimMappings.uidClaim = "sub" })
        let token = try fixture.mint(VerifierFixture.claims.setting("sub", .string(value)))
        #expect(fixture.verify(token).rejection == .controlCharacter(field: "uid"))
    }

    /// Found by the token fuzz target: kube-apiserver keeps " admin" distinct from "admin", but
    /// an Impersonate-User header value arrives trimmed, so the proxy would impersonate another user.
    @Test(
        "a mapped value with a leading or trailing space is refused: a header would arrive trimmed",
        arguments: [" admin", "admin ", " ", " \u{301}admin"])
    func surroundingSpaces(value: String) throws {
        #expect(try verify(with("email", .string(value))).rejection == .surroundingSpace(field: "username"))
        #expect(try verify(with("groups", ["ok", .string(value)])).rejection == .surroundingSpace(field: "groups"))
        let fixture = try VerifierFixture(configure: { $0.claimMappings.uidClaim = "sub" })
        let token = try fixture.mint(VerifierFixture.claims.setting("sub", .string(value)))
        #expect(fixture.verify(token).rejection == .surroundingSpace(field: "uid"))
        let inner = try verify(with("email", "ad min@example.com")).identity
        #expect(inner?.username == "ad min@example.com")
    }

    @Test("system: usernames and groups are refused with 403 unless allowReservedIdentities")
    func reserved() throws {
        let admin = try verify(with("email", "system:admin"))
        #expect(admin.rejection == .reservedIdentity("system:admin"))
        #expect(admin.rejection?.isForbidden == true)
        #expect(try verify(with("groups", ["system:masters"])).rejection == .reservedIdentity("system:masters"))
        let prefixed = try VerifierFixture(configure: { $0.claimMappings.usernamePrefix = "system:" })
        #expect(prefixed.verify(try prefixed.mint()).rejection == .reservedIdentity("system:alice@example.com"))
        let allowed = try VerifierFixture(allowReservedIdentities: true)
        #expect(
            allowed.verify(try allowed.mint(VerifierFixture.claims.setting("groups", ["system:masters"]))).identity
                != nil)
    }

    @Test("sub, nonce and at_hash must be strings when present, as go-oidc decodes them")
    func typedStandardClaims() throws {
        #expect(try verify(with("sub", 5)).rejection == .invalidClaim("sub is not a string"))
        #expect(try verify(with("nonce", ["x"])).rejection == .invalidClaim("nonce is not a string"))
        #expect(try verify(with("iat", "yesterday")).rejection == .invalidClaim("iat is not a number"))
    }
}

import Config
import Foundation
import Testbed
import Testing

@Suite("Refusing requests that carry no valid identity")
struct ProxyRejectionTests {
    /// Sends `authorization` (nil: none) and expects `status` with a Status body and nothing upstream.
    private func expectRefused(
        _ harness: ProxyHarness, authorization: String?, status: Int = 401, extraHeaders: String = "",
        sourceLocation: SourceLocation = #_sourceLocation
    ) async throws {
        let header = authorization.map { "Authorization: \($0)\r\n" } ?? ""
        let response = try await RawHTTPClient.send(
            "GET /api/v1/namespaces HTTP/1.1\r\nHost: p\r\n\(header)\(extraHeaders)Connection: close\r\n\r\n",
            port: harness.port)
        #expect(response.status == status, sourceLocation: sourceLocation)
        #expect(response.text.lowercased().contains("content-type: application/json"), sourceLocation: sourceLocation)
        if status == 401 {
            #expect(response.body == unauthorizedStatus, sourceLocation: sourceLocation)
        } else {
            #expect(response.body.contains(#""kind":"Status""#), sourceLocation: sourceLocation)
            #expect(response.body.contains(#""code":\#(status)"#), sourceLocation: sourceLocation)
        }
        #expect(harness.api.requests.isEmpty, "nothing may reach the API server", sourceLocation: sourceLocation)
    }

    @Test("no Authorization header: 401")
    func missingToken() async throws {
        try await ProxyHarness.run { try await expectRefused($0, authorization: nil) }
    }

    @Test(
        "an Authorization header that is not a usable bearer token: 401",
        arguments: ["Basic YWxpY2U6c2VjcmV0", "Bearer", "Bearer ", "Bearer  x.y.z", "Token abc", "bearer"])
    func notBearer(header: String) async throws {
        try await ProxyHarness.run { try await expectRefused($0, authorization: header) }
    }

    @Test(
        "a garbled token: 401",
        arguments: [
            "not-a-jwt", "a.b", "a.b.c", "....", "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJ4In0.",
            "eyJhbGciOiJSUzI1NiJ9.e30.c2ln.ZXh0cmE.bW9yZQ", "%%%.%%%.%%%",
        ])
    func garbledToken(token: String) async throws {
        try await ProxyHarness.run { try await expectRefused($0, authorization: "Bearer \(token)") }
    }

    @Test("the scheme is case-insensitive, as kube-apiserver reads it")
    func schemeCaseInsensitive() async throws {
        try await ProxyHarness.run { harness in
            let token = try harness.issuer.mint()
            let response = try await RawHTTPClient.send(
                "GET /version HTTP/1.1\r\nHost: p\r\nAuthorization: bEaReR \(token)\r\nConnection: close\r\n\r\n",
                port: harness.port)
            #expect(response.status == 200)
        }
    }

    @Test("an expired token: 401")
    func expired() async throws {
        try await ProxyHarness.run { harness in
            let now = Int(Date().timeIntervalSince1970)
            let claims = harness.issuer.claims().setting("exp", .int(now - 5)).setting("iat", .int(now - 3600))
            try await expectRefused(harness, authorization: "Bearer \(try harness.issuer.mint(claims))")
        }
    }

    @Test("a token for another audience: 401")
    func wrongAudience() async throws {
        try await ProxyHarness.run { harness in
            let token = try harness.issuer.mint(harness.issuer.claims(audience: "some-other-app"))
            try await expectRefused(harness, authorization: "Bearer \(token)")
        }
    }

    @Test("a token from an issuer that is not configured: 401")
    func unknownIssuer() async throws {
        try await ProxyHarness.run { harness in
            let claims = harness.issuer.claims().setting("iss", "https://evil.example.com")
            try await expectRefused(harness, authorization: "Bearer \(try harness.issuer.mint(claims))")
        }
    }

    @Test("a token signed by a key the issuer never published: 401 after one refetch")
    func unknownKeyID() async throws {
        try await ProxyHarness.run { harness in
            let fetchesBefore = harness.issuer.jwksFetches
            let stranger = try TestSigningKey.rsa(kid: "not-published", slot: 1)
            try await expectRefused(harness, authorization: "Bearer \(try harness.issuer.mint(key: stranger))")
            #expect(harness.issuer.jwksFetches == fetchesBefore + 1)
        }
    }

    @Test("a forged signature under a published kid: 401")
    func forgedSignature() async throws {
        try await ProxyHarness.run { harness in
            let forger = try TestSigningKey.rsa(kid: harness.issuer.keys[0].kid, slot: 1)
            try await expectRefused(harness, authorization: "Bearer \(try harness.issuer.mint(key: forger))")
        }
    }

    @Test("a token with alg none: 401")
    func algNone() async throws {
        try await ProxyHarness.run { harness in
            let token = TokenMinter.assemble(header: ["alg": "none"], claims: harness.issuer.claims(), signature: [])
            try await expectRefused(harness, authorization: "Bearer \(token)")
            let withSignature = TokenMinter.assemble(
                header: ["alg": "none", "kid": "rsa-1"], claims: harness.issuer.claims(), signature: [1, 2, 3])
            try await expectRefused(harness, authorization: "Bearer \(withSignature)")
        }
    }

    @Test("an HS256 token keyed with the issuer's public key: 401")
    func hmacWithPublicKey() async throws {
        try await ProxyHarness.run { harness in
            let key = harness.issuer.keys[0]
            for secret in [key.publicKeyDER, Array(key.publicKeyPEM.utf8)] {
                let token = TokenMinter.mintHS256(claims: harness.issuer.claims(), secret: secret, kid: key.kid)
                try await expectRefused(harness, authorization: "Bearer \(token)")
            }
        }
    }

    @Test("a client asserting its own identity with Impersonate-* headers: 403, even with a valid token")
    func clientImpersonationHeaders() async throws {
        try await ProxyHarness.run { harness in
            let token = try harness.issuer.mint()
            for header in [
                "Impersonate-User: admin", "impersonate-group: system:masters", "IMPERSONATE-UID: 0",
                "Impersonate-Extra-scopes: all",
            ] {
                try await expectRefused(
                    harness, authorization: "Bearer \(token)", status: 403, extraHeaders: header + "\r\n")
            }
        }
    }

    @Test("a username or group in the reserved system: namespace: 403")
    func reservedIdentity() async throws {
        try await ProxyHarness.run { harness in
            let asAdmin = try harness.issuer.mint(harness.issuer.claims(email: "system:admin"))
            try await expectRefused(harness, authorization: "Bearer \(asAdmin)", status: 403)
            let asMasters = try harness.issuer.mint(harness.issuer.claims(groups: ["dev", "system:masters"]))
            try await expectRefused(harness, authorization: "Bearer \(asMasters)", status: 403)
        }
    }

    @Test("a claim carrying CR or LF never becomes a header: 401")
    func controlCharactersInClaims() async throws {
        try await ProxyHarness.run { harness in
            let injected = try harness.issuer.mint(
                harness.issuer.claims(email: "eve@example.com\r\nImpersonate-Group: system:masters"))
            try await expectRefused(harness, authorization: "Bearer \(injected)")
            let nul = try harness.issuer.mint(harness.issuer.claims(groups: ["dev\u{0}ops"]))
            try await expectRefused(harness, authorization: "Bearer \(nul)")
        }
    }

    @Test("several Authorization headers: 401")
    func duplicateAuthorization() async throws {
        try await ProxyHarness.run { harness in
            let token = try harness.issuer.mint()
            try await expectRefused(
                harness, authorization: "Bearer \(token)", extraHeaders: "Authorization: Bearer \(token)\r\n")
        }
    }
}

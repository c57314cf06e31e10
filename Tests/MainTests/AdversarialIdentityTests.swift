import Foundation
import Testbed
import Testing

/// Issue #9, identity smuggling, end to end through the real binary: no input changes whose
/// identity reaches the API server, and every refusal leaves the process serving.
@Suite("Adversarial: identity smuggling, through the real binary")
struct AdversarialIdentityTests {
    @Test("Impersonate-* in any case, spacing, value or number: 403 Status, nothing upstream")
    func clientImpersonationHeaders() async throws {
        try await RunningProxy.run { proxy in
            let headers = [
                "Impersonate-User: admin", "impersonate-user: admin", "IMPERSONATE-GROUP: system:masters",
                "iMpErSoNaTe-Uid: 0", "Impersonate-Extra-Scopes: all", "Impersonate-User:admin",
                "Impersonate-User: \t admin \t", "Impersonate-User:", "Impersonate-User: alice@example.com",
                "Impersonate-Group: developers, system:masters", "Impersonate-User: a\r\nImpersonate-User: b",
                "X-Note: 1\r\nImpersonate-User: admin\r\nImpersonate-Group: system:masters",
            ]
            try await proxy.expectRefused(eachHeader: headers, status: 403)
        }
    }

    @Test("a header name made malformed to slip Impersonate-* past a check: 400, nothing upstream")
    func malformedImpersonationHeaders() async throws {
        try await RunningProxy.run { proxy in
            let headers = [
                "Impersonate-User : admin", "Impersonate-User\t: admin", "Impersonate-User\u{0}: admin",
                "Impersonate User: admin", "Impersonate-User: adm\u{0}in", "Impersonate-User: admin\rX-A: b",
            ]
            try await proxy.expectRefused(eachHeader: headers, status: 400)
        }
    }

    @Test("X-Remote-* and a client's X-Forwarded-For are dropped: the API server sees only the token's identity")
    func remoteHeadersDropped() async throws {
        try await RunningProxy.run { proxy in
            let before = proxy.api.requests.count
            let response = try await proxy.send(
                try proxy.request(extra: [
                    "X-Remote-User: admin", "x-remote-group: system:masters", "X-REMOTE-EXTRA-Scopes: all",
                    "X-Remote-Uid: 0", "X-Remote-Group: system:nodes", "X-Forwarded-For: 10.0.0.1",
                ]))
            #expect(response.status == 200)
            let seen = try #require(proxy.api.requests.dropFirst(before).first)
            #expect(!seen.headers.contains { $0.name.lowercased().hasPrefix("x-remote-") })
            #expect(seen.values("Impersonate-User") == ["alice@example.com"])
            #expect(seen.values("Impersonate-Group") == ["v1:developers"])
            #expect(!seen.headers.contains { $0.name.lowercased() == "impersonate-uid" })
            #expect(seen.values("X-Forwarded-For") == ["127.0.0.1"])
            try await proxy.expectServing()
        }
    }

    @Test("several Authorization headers, or several tokens in one: 401, nothing upstream")
    func duplicatedAuthorization() async throws {
        try await RunningProxy.run { proxy in
            let token = try proxy.issuer.mint()
            let other = try proxy.issuer.mint(proxy.issuer.claims(email: "mallory@example.com"))
            for extra in [
                ["Authorization: Bearer \(other)"], ["authorization: Bearer \(token)"],
                ["Authorization: Basic YWRtaW46YWRtaW4="],
            ] {
                try await proxy.expectRefused(try proxy.request(extra: extra), status: 401, "\(extra)")
            }
            try await proxy.expectRefused(
                try proxy.request(token: "\(token), Bearer \(other)"),
                status: 401, "two tokens in one header")
        }
    }

    @Test("claims with CR, LF, NUL or another control character never become headers: 401, nothing upstream")
    func controlCharactersInClaims() async throws {
        try await RunningProxy.run { proxy in
            for (email, groups) in [
                ("eve@example.com\r\nImpersonate-Group: system:masters", ["developers"]),
                ("eve@example.com\nImpersonate-User: admin", ["developers"]),
                ("eve@example.com\r", ["developers"]), ("eve@exa\u{0}mple.com", ["developers"]),
                ("eve@example.com\t", ["developers"]), ("eve\u{7F}@example.com", ["developers"]),
                ("eve@example.com", ["dev\r\nImpersonate-Group: system:masters"]),
                ("eve@example.com", ["dev", "ops\u{0}"]), ("eve@example.com", ["\n"]),
            ] {
                try await proxy.expectRefused(email: email, groups: groups, status: 401)
            }
        }
    }

    @Test("header-like text in a claim stays one verbatim value of one header")
    func headerLikeClaims() async throws {
        try await RunningProxy.run { proxy in
            let issuer = proxy.issuer
            let email = "eve@example.com Impersonate-Group: system:masters"
            let token = try issuer.mint(issuer.claims(email: email, groups: ["x: y", "Impersonate-User: admin"]))
            let before = proxy.api.requests.count
            let response = try await proxy.send(try proxy.request(token: token))
            #expect(response.status == 200)
            let seen = try #require(proxy.api.requests.dropFirst(before).first)
            #expect(seen.values("Impersonate-User") == [email])
            #expect(seen.values("Impersonate-Group") == ["v1:x: y", "v1:Impersonate-User: admin"])
            try await proxy.expectServing()
        }
    }

    @Test("usernames and groups starting system: are refused: 403 Status, nothing upstream")
    func reservedIdentities() async throws {
        try await RunningProxy.run(groupsPrefix: "") { proxy in
            for (email, groups) in [
                ("system:admin", ["developers"]), ("system:serviceaccount:kube-system:default", []),
                ("system:", []), ("alice@example.com", ["system:masters"]),
                ("alice@example.com", ["developers", "system:nodes"]),
            ] {
                try await proxy.expectRefused(email: email, groups: groups, status: 403)
            }
        }
    }

    @Test("a token naming one configured issuer but signed with another's key: 401, nothing upstream")
    func crossIssuerSignature() async throws {
        let second = try await StandInIssuer(keys: [try .rsa(kid: "second-key", slot: 1)])
        try await stopping(second) { second in
            try await crossIssuerSignature(second)
        }
    }

    private func crossIssuerSignature(_ second: StandInIssuer) async throws {
        try await RunningProxy.run(alsoTrusting: second) { proxy in
            let first = proxy.issuer
            // Each issuer's own tokens work, mapped with its own prefix.
            #expect(try await proxy.get().groups == ["a:developers"])
            let before = proxy.api.requests.count
            let fromSecond = try second.mint()
            let secondResponse = try await proxy.send(try proxy.request(token: fromSecond))
            #expect(secondResponse.status == 200)
            #expect(proxy.api.requests.dropFirst(before).map { $0.values("Impersonate-Group") } == [["b:developers"]])

            let secondKey = second.keys[0]
            let forgeries = [
                // The first issuer's iss, the second's key under its own kid (not in the first's JWKS).
                try TokenMinter.mint(claims: first.claims(), key: secondKey),
                // The same, but claiming the first issuer's kid.
                try TokenMinter.mint(
                    claims: first.claims(), key: secondKey, header: ["alg": "RS256", "kid": .string(first.keys[0].kid)]),
                // The second issuer's iss signed with the first's key, both ways round.
                try TokenMinter.mint(claims: second.claims(), key: first.keys[0]),
                try TokenMinter.mint(
                    claims: second.claims(), key: first.keys[0], header: ["alg": "RS256", "kid": "second-key"]),
            ]
            for (index, token) in forgeries.enumerated() {
                try await proxy.expectRefused(
                    try proxy.request(token: token), status: 401,
                    "forgery \(index)")
            }
        }
    }
}

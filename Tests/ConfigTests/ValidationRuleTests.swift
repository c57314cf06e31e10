import Foundation
import Testing

@testable import Config

/// kube-apiserver's validation rules for `jwt[]` entries, and the proxy's own rules for the
/// rest of the file: one test per rule, each checking the exact path and message reported.
@Suite("Config file validation: one rule per test, each reported at its YAML path")
struct ValidationRuleTests {
    @Test(
        "issuer URLs must be https without query, fragment or user info",
        arguments: [
            ("http://idp.example.com", "jwt[0].issuer.url: \"http://idp.example.com\": URL scheme must be https"),
            (
                "https://idp.example.com?tenant=1",
                "jwt[0].issuer.url: \"https://idp.example.com?tenant=1\": URL must not contain a query"
            ),
            (
                "https://idp.example.com#x",
                "jwt[0].issuer.url: \"https://idp.example.com#x\": URL must not contain a fragment"
            ),
            (
                "https://me:pw@idp.example.com",
                "jwt[0].issuer.url: \"https://me:pw@idp.example.com\": URL must not contain a username or password"
            ),
        ])
    func issuerURLShape(url: String, expected: String) {
        #expect(problems(oneIssuer(issuer: "url: \"\(url)\"\n      audiences: [k]")) == [expected])
    }

    @Test("an issuer URL is required")
    func issuerURLRequired() {
        #expect(
            problems(oneIssuer(issuer: "audiences: [k]")) == [
                "jwt[0].issuer.url: is required: the issuer's https URL, equal to its tokens' iss"
            ])
    }

    @Test("issuer URLs are unique")
    func uniqueIssuerURLs() {
        let yaml = """
            jwt:
              - issuer: {url: "https://idp.example.com", audiences: [a]}
                name: one
              - issuer: {url: "https://idp.example.com", audiences: [b]}
                name: two
            """
        #expect(
            problems(yaml) == [
                "jwt[1].issuer.url: \"https://idp.example.com\" is already the URL of jwt[0]; issuer URLs must be unique"
            ])
    }

    @Test("discoveryURL must differ from url, trailing slashes aside")
    func discoveryURLDiffers() {
        #expect(
            problems(
                oneIssuer(
                    issuer:
                        "url: https://idp.example.com\n      discoveryURL: https://idp.example.com/\n      audiences: [k]"
                ))
                == ["jwt[0].issuer.discoveryURL: \"https://idp.example.com/\": discoveryURL must be different from URL"]
        )
    }

    @Test("discoveryURL follows the URL rules")
    func discoveryURLShape() {
        #expect(
            problems(
                oneIssuer(
                    issuer: "url: https://idp.example.com\n      discoveryURL: http://internal/x\n      audiences: [k]")
            )
                == ["jwt[0].issuer.discoveryURL: \"http://internal/x\": URL scheme must be https"])
    }

    @Test("discovery URLs are unique")
    func uniqueDiscoveryURLs() {
        let yaml = """
            jwt:
              - issuer: {url: "https://a.example.com", discoveryURL: "https://internal/d", audiences: [k]}
              - issuer: {url: "https://b.example.com", discoveryURL: "https://internal/d", audiences: [k]}
            """
        #expect(
            problems(yaml) == [
                "jwt[1].issuer.discoveryURL: \"https://internal/d\" is already the discoveryURL of jwt[0]; discovery URLs must be unique"
            ])
    }

    @Test("at least one audience is required", arguments: ["", "\n      audiences: []"])
    func audienceRequired(audiences: String) {
        #expect(
            problems(oneIssuer(issuer: "url: https://idp.example.com" + audiences)) == [
                "jwt[0].issuer.audiences: at least one audience is required: the client ID the issuer's tokens carry in aud"
            ])
    }

    @Test("audiences are non-empty and unique")
    func audienceValues() {
        let yaml = oneIssuer(
            issuer: "url: https://idp.example.com\n      audiences: [a, \"\", a]\n      audienceMatchPolicy: MatchAny")
        #expect(
            problems(yaml) == [
                "jwt[0].issuer.audiences[1]: audience can't be empty",
                "jwt[0].issuer.audiences[2]: duplicate audience \"a\"",
            ])
    }

    @Test("several audiences need audienceMatchPolicy MatchAny")
    func severalAudiencesNeedMatchAny() {
        #expect(
            problems(oneIssuer(issuer: "url: https://idp.example.com\n      audiences: [a, b]")) == [
                "jwt[0].issuer.audienceMatchPolicy: audienceMatchPolicy must be MatchAny for multiple audiences"
            ])
        #expect(
            problems(
                oneIssuer(
                    issuer: "url: https://idp.example.com\n      audiences: [a, b]\n      audienceMatchPolicy: MatchAll"
                ))
                == [
                    "jwt[0].issuer.audienceMatchPolicy: \"MatchAll\": audienceMatchPolicy must be MatchAny for multiple audiences"
                ])
    }

    @Test("a single audience takes no policy or MatchAny")
    func singleAudiencePolicy() throws {
        #expect(
            problems(
                oneIssuer(
                    issuer: "url: https://idp.example.com\n      audiences: [a]\n      audienceMatchPolicy: MatchAll"))
                == [
                    "jwt[0].issuer.audienceMatchPolicy: \"MatchAll\": audienceMatchPolicy must be empty or MatchAny for single audience"
                ])
        let loaded = try loadFile(
            oneIssuer(issuer: "url: https://idp.example.com\n      audiences: [a]\n      audienceMatchPolicy: MatchAny")
        )
        #expect(loaded.configuration.issuers[0].audiences == ["a"])
    }

    @Test("certificateAuthority must hold a parsable PEM certificate")
    func certificateAuthority() {
        #expect(
            problems(
                oneIssuer(
                    issuer: "url: https://idp.example.com\n      audiences: [k]\n      certificateAuthority: hello"))
                == [
                    "jwt[0].issuer.certificateAuthority: the value holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
                ])
        let garbled = "|\n        -----BEGIN CERTIFICATE-----\n        !!!\n        -----END CERTIFICATE-----"
        #expect(
            problems(
                oneIssuer(
                    issuer: "url: https://idp.example.com\n      audiences: [k]\n      certificateAuthority: \(garbled)"
                ))
                == [
                    "jwt[0].issuer.certificateAuthority: the value: certificate 1 is not valid PEM (bad base64 or not DER)"
                ])
    }

    @Test("a claim validation rule has a claim or an expression, not both")
    func claimRuleClaimXorExpression() {
        let both = oneIssuer(entry: "    claimValidationRules:\n      - {claim: hd, expression: \"claims.hd == 'x'\"}")
        #expect(problems(both) == ["jwt[0].claimValidationRules[0]: claim and expression can't both be set"])
        let neither = oneIssuer(entry: "    claimValidationRules:\n      - {requiredValue: x}")
        #expect(problems(neither) == ["jwt[0].claimValidationRules[0]: claim or expression is required"])
    }

    @Test("claim validation rules name each claim once")
    func uniqueClaimRules() {
        let yaml = oneIssuer(
            entry:
                "    claimValidationRules:\n      - {claim: hd, requiredValue: a}\n      - {claim: hd, requiredValue: b}"
        )
        #expect(
            problems(yaml) == [
                "jwt[0].claimValidationRules[1].claim: duplicate claim \"hd\": each claim may have one rule"
            ])
    }

    @Test("a claim rule takes no message; an expression rule takes no requiredValue")
    func claimRuleExtras() {
        let message = oneIssuer(
            entry: "    claimValidationRules:\n      - {claim: hd, requiredValue: a, message: nope}")
        #expect(problems(message) == ["jwt[0].claimValidationRules[0].message: message can't be set when claim is set"])
        let required = oneIssuer(entry: "    claimValidationRules:\n      - {expression: \"true\", requiredValue: a}")
        #expect(
            problems(required) == [
                "jwt[0].claimValidationRules[0].requiredValue: requiredValue can't be set when expression is set",
                "jwt[0].claimValidationRules[0].expression: \(JWTValidation.celNotSupported)",
            ])
    }

    @Test("every CEL expression field is refused as not supported yet, by its path")
    func celExpressionsRefused() {
        let yaml = oneIssuer(
            entry: """
                    claimValidationRules:
                      - expression: "claims.hd == 'example.com'"
                    claimMappings:
                      username: {expression: "claims.sub"}
                      groups: {expression: "claims.roles"}
                      uid: {expression: "claims.sub"}
                      extra:
                        - {key: example.com/tenant, valueExpression: "claims.tid"}
                    userValidationRules:
                      - {expression: "!user.username.startsWith('system:')", message: nope}
                """)
        #expect(
            problems(yaml) == [
                "jwt[0].claimValidationRules[0].expression: \(JWTValidation.celNotSupported)",
                "jwt[0].claimMappings.username.expression: \(JWTValidation.celNotSupported)",
                "jwt[0].claimMappings.groups.expression: \(JWTValidation.celNotSupported)",
                "jwt[0].claimMappings.uid.expression: \(JWTValidation.celNotSupported)",
                "jwt[0].claimMappings.extra: not supported yet (its values are CEL expressions); remove it",
                "jwt[0].userValidationRules: not supported yet (its rules are CEL expressions); remove it. The proxy refuses system: usernames and groups itself unless allowReservedIdentities is true",
            ])
    }

    @Test("a mapping has a claim or an expression, not both; no prefix beside an expression")
    func mappingClaimXorExpression() {
        let both = oneIssuer(entry: "    claimMappings:\n      username: {claim: email, expression: claims.email}")
        #expect(problems(both) == ["jwt[0].claimMappings.username: claim and expression can't both be set"])
        let uidBoth = oneIssuer(entry: "    claimMappings:\n      uid: {claim: sub, expression: claims.sub}")
        #expect(problems(uidBoth) == ["jwt[0].claimMappings.uid: claim and expression can't both be set"])
        let prefixed = oneIssuer(entry: "    claimMappings:\n      groups: {expression: claims.g, prefix: \"x:\"}")
        #expect(
            problems(prefixed) == [
                "jwt[0].claimMappings.groups.prefix: prefix can't be set when expression is set",
                "jwt[0].claimMappings.groups.expression: \(JWTValidation.celNotSupported)",
            ])
    }

    @Test("an explicitly empty username claim is refused")
    func usernameClaimRequired() {
        let yaml = oneIssuer(entry: "    claimMappings:\n      username: {claim: \"\"}")
        #expect(
            problems(yaml) == [
                "jwt[0].claimMappings.username.claim: must not be empty: name the claim that holds the username"
            ])
    }

    @Test("in the proxy's own file, omitted mappings and prefixes take the defaults")
    func proxyFileDefaults() throws {
        let issuer = try loadFile(oneIssuer(entry: "    claimMappings:\n      groups: {prefix: \"idp:\"}"))
            .configuration
            .issuers[0]
        #expect(
            issuer.claimMappings
                == ClaimMappings(
                    usernameClaim: "email", usernamePrefix: "", groupsClaim: "groups", groupsPrefix: "idp:"))
        let noGroups = try loadFile(oneIssuer(entry: "    claimMappings:\n      groups: {claim: \"\"}")).configuration
            .issuers[0]
        #expect(noGroups.claimMappings.groupsClaim == nil)
    }

    @Test("egressSelectorType is a kube-apiserver feature the proxy refuses by name")
    func egressSelectorRefused() {
        #expect(
            problems(
                oneIssuer(
                    issuer: "url: https://idp.example.com\n      audiences: [k]\n      egressSelectorType: cluster"))
                == [
                    "jwt[0].issuer.egressSelectorType: \"cluster\": egress selection is a kube-apiserver feature the proxy does not have; remove this field (the proxy connects to the issuer directly)"
                ])
    }

    @Test("names are /readyz-safe and unique; derived names that collide get a suffix")
    func names() throws {
        #expect(
            problems(oneIssuer(entry: "    name: Team A")) == [
                "jwt[0].name: \"Team A\" is not a valid name: use at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit (it names the /readyz check issuer-<name>)"
            ])
        let duplicate = """
            jwt:
              - issuer: {url: "https://a.example.com", audiences: [k]}
                name: idp
              - issuer: {url: "https://b.example.com", audiences: [k]}
                name: idp
            """
        #expect(
            problems(duplicate) == [
                "jwt[1].name: \"idp\" is already the name of jwt[0]; names must be unique (they name /readyz checks)"
            ])
        let derived = """
            jwt:
              - issuer: {url: "https://idp.example.com", audiences: [k]}
              - issuer: {url: "https://idp.example.com/", audiences: [k]}
              - issuer: {url: "https://other.example.com", audiences: [k]}
                name: idp-example-com-3
            """
        #expect(
            try loadFile(derived).configuration.issuers.map(\.name) == [
                "idp-example-com", "idp-example-com-2", "idp-example-com-3",
            ])
    }

    @Test("at least one issuer, at most 64")
    func issuerCount() {
        #expect(
            problems("listenAddr: \":8080\"\n") == [
                "jwt: lists no issuers; add at least one (jwt[].issuer.url and audiences), or pass --oidc-issuer-url"
            ])
        let many =
            "jwt:\n"
            + (0..<65).map { "  - issuer: {url: \"https://idp\($0).example.com\", audiences: [k]}" }
            .joined(separator: "\n")
        #expect(problems(many) == ["jwt: lists 65 issuers; at most 64 are allowed"])
    }

    @Test("listen and metrics addresses are Go host:port forms; an empty metricsAddr disables metrics")
    func addresses() throws {
        #expect(
            problems(oneIssuer() + "listenAddr: \"8080\"\n").first
                == "listenAddr: \"8080\" has no port; want HOST:PORT such as \":8080\", \"127.0.0.1:8080\" or \"[::1]:8080\""
        )
        #expect(problems(oneIssuer() + "metricsAddr: \"[::1:9090\"\n").first?.hasPrefix("metricsAddr: ") == true)
        #expect(try loadFile(oneIssuer() + "metricsAddr: \"\"\n").configuration.metricsAddress == nil)
    }

    @Test("tokenCacheTTL is a non-negative Go duration")
    func tokenCacheTTL() throws {
        for bad in ["\"10\"", "\"-1s\"", "\"10 seconds\"", "ten"] {
            #expect(
                problems(oneIssuer() + "tokenCacheTTL: \(bad)\n").first?.hasPrefix("tokenCacheTTL: \"") == true,
                "\(bad)")
        }
        #expect(
            problems(oneIssuer() + "tokenCacheTTL: 10\n") == [
                "tokenCacheTTL: must be a string, not the number 10 (put it in quotes: \"10\")"
            ])
        #expect(try loadFile(oneIssuer() + "tokenCacheTTL: 1m30s\n").configuration.tokenCacheTTL == .seconds(90))
        #expect(try loadFile(oneIssuer() + "tokenCacheTTL: \"0\"\n").configuration.tokenCacheTTL == .zero)
    }

    @Test("readiness is all or any")
    func readiness() throws {
        #expect(
            problems(oneIssuer() + "readiness: most\n") == [
                "readiness: \"most\" is not supported; use all (every issuer must be ready) or any (one is enough)"
            ])
        #expect(try loadFile(oneIssuer() + "readiness: any\n").configuration.readiness == .any)
    }

    @Test("upstream: an https server with a token file, or a kubeconfig, not both")
    func upstream() throws {
        #expect(
            problems(oneIssuer() + "upstream: {server: \"http://10.0.0.1\", tokenFile: /t}\n") == [
                "upstream.server: \"http://10.0.0.1\" is not an https:// URL with a host"
            ])
        #expect(
            problems(oneIssuer() + "upstream: {server: \"https://10.0.0.1/prefix\", tokenFile: /t}\n") == [
                "upstream.server: \"https://10.0.0.1/prefix\": give only https://host[:port], without a path, query or user"
            ])
        #expect(
            problems(oneIssuer() + "upstream: {server: \"https://10.0.0.1\"}\n") == [
                "upstream.tokenFile: is required with upstream.server: the file holding the proxy's own bearer token (re-read when it changes)"
            ])
        #expect(
            problems(oneIssuer() + "upstream: {kubeconfig: /k, tokenFile: /t}\n") == [
                "upstream.tokenFile: can't be set with kubeconfig; the kubeconfig names the server and credential"
            ])
        #expect(
            problems(oneIssuer() + "upstream: {certificateAuthorityFile: /ca}\n") == [
                "upstream.server: is required in upstream (or give upstream.kubeconfig); omit upstream to run in-cluster"
            ])
        let relative = try loadFile(
            oneIssuer()
                + "upstream: {server: \"https://10.0.0.1:6443\", certificateAuthorityFile: ca.crt, tokenFile: /var/t}\n"
        )
        #expect(
            relative.configuration.upstream
                == .server(
                    url: "https://10.0.0.1:6443", certificateAuthorityFile: "/etc/kip/ca.crt", tokenFile: "/var/t"))
    }

    @Test("tls needs both files, each readable; flags override the file's")
    func tlsFiles() throws {
        #expect(
            problems(oneIssuer() + "tls: {certFile: /nonexistent/tls.crt}\n") == [
                "tls.certFile: cannot read \"/nonexistent/tls.crt\": no such file, or not readable",
                "tls.keyFile: is required: the proxy serves HTTPS with a certificate and its private key",
            ])
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("kip-tls-\(UUID())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        for name in ["a.crt", "a.key", "b.crt"] {
            try "pem".write(toFile: directory + "/" + name, atomically: true, encoding: .utf8)
        }
        let yaml = oneIssuer() + "tls: {certFile: \(directory)/a.crt, keyFile: \(directory)/a.key}\n"
        let loaded = try loadFile(yaml)
        #expect(
            loaded.configuration.tls
                == ServingTLS(certificateFile: directory + "/a.crt", privateKeyFile: directory + "/a.key"))
        var flags = ProxyFlags()
        flags.tlsCertFile = directory + "/b.crt"
        let overridden = try loadFile(yaml, flags: flags)
        #expect(
            overridden.configuration.tls
                == ServingTLS(certificateFile: directory + "/b.crt", privateKeyFile: directory + "/a.key"))
    }

    @Test("every problem in the file is reported in one pass")
    func allProblemsAtOnce() {
        let yaml = """
            listenAddr: nowhere
            readiness: sometimes
            jwt:
              - issuer: {url: "http://a.example.com", audiences: [k]}
              - issuer: {url: "https://b.example.com"}
                claimMappings:
                  username: {claim: ""}
            """
        #expect(
            problems(yaml) == [
                "listenAddr: \"nowhere\" has no port; want HOST:PORT such as \":8080\", \"127.0.0.1:8080\" or \"[::1]:8080\"",
                "readiness: \"sometimes\" is not supported; use all (every issuer must be ready) or any (one is enough)",
                "jwt[0].issuer.url: \"http://a.example.com\": URL scheme must be https",
                "jwt[1].issuer.audiences: at least one audience is required: the client ID the issuer's tokens carry in aud",
                "jwt[1].claimMappings.username.claim: must not be empty: name the claim that holds the username",
            ])
    }
}

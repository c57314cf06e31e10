import Foundation
import Testing

@testable import Config

/// The two shapes of config file (SPEC §2), and strict decoding.
@Suite("Config file shapes and strict decoding")
struct ConfigFileTests {
    @Test("the proxy's own file: every key read")
    func proxyFileEveryKey() throws {
        let yaml = """
            kind: ProxyConfiguration
            listenAddr: "127.0.0.1:8443"
            metricsAddr: "[::1]:9100"
            upstream:
              server: https://10.96.0.1:443
              certificateAuthorityFile: /var/run/ca.crt
              tokenFile: /var/run/token
            tokenCacheTTL: 30s
            allowReservedIdentities: true
            readiness: any
            jwt:
              - issuer:
                  url: https://idp-a.example.com
                  discoveryURL: https://internal.example.com/.well-known/openid-configuration
                  audiences: [kubernetes, kubectl]
                  audienceMatchPolicy: MatchAny
                  certificateAuthority: |
            \(samplePEM.split(separator: "\n").map { "          " + $0 }.joined(separator: "\n"))
                name: idp-a
                claimValidationRules:
                  - claim: hd
                    requiredValue: example.com
                claimMappings:
                  username: {claim: sub, prefix: "idp-a:"}
                  groups: {claim: roles, prefix: "idp-a:"}
                  uid: {claim: sub}
              - issuer: {url: "https://idp-b.example.com/realms/x", audiences: [kubernetes]}
            """
        let configuration = try loadFile(yaml).configuration
        #expect(configuration.listenAddress == ListenAddress(host: "127.0.0.1", port: 8443))
        #expect(configuration.metricsAddress == ListenAddress(host: "::1", port: 9100))
        #expect(
            configuration.upstream
                == .server(
                    url: "https://10.96.0.1:443", certificateAuthorityFile: "/var/run/ca.crt",
                    tokenFile: "/var/run/token"))
        #expect(configuration.tokenCacheTTL == .seconds(30))
        #expect(configuration.allowReservedIdentities)
        #expect(configuration.readiness == .any)
        try #require(configuration.issuers.count == 2)
        let a = configuration.issuers[0]
        #expect(a.url == "https://idp-a.example.com")
        #expect(a.discoveryURL == "https://internal.example.com/.well-known/openid-configuration")
        #expect(a.audiences == ["kubernetes", "kubectl"])
        #expect(a.certificateAuthorityPEM?.contains("MIIBAAAAAAAAAAAA") == true)
        #expect(a.name == "idp-a")
        #expect(a.claimValidationRules == [ClaimValidationRule(claim: "hd", requiredValue: "example.com")])
        #expect(
            a.claimMappings
                == ClaimMappings(
                    usernameClaim: "sub", usernamePrefix: "idp-a:", groupsClaim: "roles", groupsPrefix: "idp-a:",
                    uidClaim: "sub"))
        #expect(a.signingAlgorithms == Set(SigningAlgorithm.allCases))
        let b = configuration.issuers[1]
        #expect(b.name == "idp-b-example-com-realms-x")
        #expect(
            b.claimMappings
                == ClaimMappings(usernameClaim: "email", usernamePrefix: "", groupsClaim: "groups", groupsPrefix: ""))
    }

    @Test("the proxy's own file: omitted keys take SPEC's defaults")
    func proxyFileDefaults() throws {
        let configuration = try loadFile("jwt:\n  - issuer: {url: \"https://idp.example.com\", audiences: [k]}\n")
            .configuration
        #expect(configuration.listenAddress == ListenAddress(host: "", port: 8080))
        #expect(configuration.metricsAddress == ListenAddress(host: "", port: 9090))
        #expect(configuration.upstream == .inCluster)
        #expect(configuration.tokenCacheTTL == .seconds(10))
        #expect(!configuration.allowReservedIdentities)
        #expect(configuration.readiness == .all)
    }

    @Test(
        "a kube-apiserver AuthenticationConfiguration is used as is, in every accepted apiVersion",
        arguments: ["v1", "v1beta1", "v1alpha1"])
    func authenticationConfiguration(version: String) throws {
        let yaml = """
            apiVersion: apiserver.config.k8s.io/\(version)
            kind: AuthenticationConfiguration
            anonymous:
              enabled: true
              conditions:
                - path: /livez
            jwt:
              - issuer:
                  url: https://idp.example.com
                  audiences: [kubernetes]
                claimValidationRules:
                  - claim: hd
                    requiredValue: example.com
                claimMappings:
                  username:
                    claim: sub
                    prefix: "oidc:"
                  groups:
                    claim: groups
                    prefix: ""
            """
        let loaded = try loadFile(yaml)
        let issuer = try #require(loaded.configuration.issuers.first)
        #expect(issuer.url == "https://idp.example.com")
        #expect(
            issuer.claimMappings
                == ClaimMappings(usernameClaim: "sub", usernamePrefix: "oidc:", groupsClaim: "groups", groupsPrefix: "")
        )
        #expect(issuer.claimValidationRules == [ClaimValidationRule(claim: "hd", requiredValue: "example.com")])
        #expect(loaded.configuration.listenAddress == ListenAddress(host: "", port: 8080))
        #expect(loaded.notes.count == 1 && loaded.notes[0].hasPrefix("anonymous: "))
    }

    @Test(
        "AuthenticationConfiguration follows kube-apiserver: username required, prefixes required, no groups by default"
    )
    func authenticationConfigurationRules() throws {
        let header = "apiVersion: apiserver.config.k8s.io/v1\nkind: AuthenticationConfiguration\n"
        let noMappings = header + "jwt:\n  - issuer: {url: \"https://idp.example.com\", audiences: [k]}\n"
        #expect(
            problems(noMappings) == [
                "jwt[0].claimMappings.username: claim or expression is required: the claim that holds the username"
            ])
        let noPrefixes =
            header
            + "jwt:\n  - issuer: {url: \"https://idp.example.com\", audiences: [k]}\n"
            + "    claimMappings: {username: {claim: sub}, groups: {claim: groups}}\n"
        #expect(
            problems(noPrefixes) == [
                "jwt[0].claimMappings.username.prefix: is required when claim is set (kube-apiserver's rule for an AuthenticationConfiguration); set it to \"\" to disable prefixing",
                "jwt[0].claimMappings.groups.prefix: is required when claim is set (kube-apiserver's rule for an AuthenticationConfiguration); set it to \"\" to disable prefixing",
            ])
        let usernameOnly =
            header
            + "jwt:\n  - issuer: {url: \"https://idp.example.com\", audiences: [k]}\n"
            + "    claimMappings: {username: {claim: email, prefix: \"\"}}\n"
        #expect(try loadFile(usernameOnly).configuration.issuers[0].claimMappings.groupsClaim == nil)
        let named =
            header + "jwt:\n  - issuer: {url: \"https://idp.example.com\", audiences: [k]}\n    name: idp\n"
            + "    claimMappings: {username: {claim: email, prefix: \"\"}}\n"
        #expect(problems(named) == ["jwt[0].name: unknown field"])
    }

    @Test("apiVersion and kind are checked")
    func kindsAndVersions() {
        #expect(
            problems("apiVersion: apiserver.config.k8s.io/v2\nkind: AuthenticationConfiguration\njwt: []\n") == [
                "apiVersion: \"apiserver.config.k8s.io/v2\" is not supported; use one of apiserver.config.k8s.io/v1, apiserver.config.k8s.io/v1beta1, apiserver.config.k8s.io/v1alpha1"
            ])
        #expect(
            problems("kind: AuthorizationConfiguration\n") == [
                "kind: \"AuthorizationConfiguration\" is not supported; use ProxyConfiguration (or no kind) or AuthenticationConfiguration"
            ])
        #expect(
            problems("apiVersion: apiserver.config.k8s.io/v1\njwt: []\n") == [
                "kind: is required with apiVersion; a kube-apiserver file has kind: AuthenticationConfiguration"
            ])
    }

    @Test("an unknown key is an error naming its path, with a suggestion when one is close")
    func unknownKeys() {
        let yaml = """
            listenAdr: ":8080"
            jwt:
              - issuer: {url: "https://a.example.com", audiences: [k]}
              - issuer: {urll: "https://b.example.com", audiences: [k]}
                claimMappings:
                  username: {claim: email, prefixx: ""}
                  roles: {claim: roles}
            """
        #expect(
            problems(yaml) == [
                "listenAdr: unknown field (did you mean \"listenAddr\"?)",
                "jwt[1].issuer.urll: unknown field (did you mean \"url\"?)",
                "jwt[1].claimMappings.roles: unknown field",
                "jwt[1].claimMappings.username.prefixx: unknown field (did you mean \"prefix\"?)",
                "jwt[1].issuer.url: is required: the issuer's https URL, equal to its tokens' iss",
            ])
    }

    /// Found by the config fuzz target: an anchor alone before the colon makes an empty key,
    /// which was reported at an empty path.
    @Test("an empty key is an error naming the mapping that holds it")
    func emptyKeys() {
        let anchoredKey = "&jwt:\n- &a\n  issuer: {url: 'hsbpe', audiences: [k]}\n- *a\n"
        #expect(problems(anchoredKey).contains("(top level): has an empty key"))
        let explicitKey = "jwt:\n-sptps:\n- is'httpsB/ple: :k &\n?"
        for yaml in [anchoredKey, explicitKey, ": 1\n"] {
            #expect(!problems(yaml).contains { $0.hasPrefix(":") || $0.hasPrefix(".") }, "\(yaml)")
        }
    }

    @Test("a value of the wrong type is an error naming its path")
    func wrongTypes() {
        let yaml = """
            allowReservedIdentities: "yes please"
            jwt:
              - issuer: {url: "https://a.example.com", audiences: kubernetes}
              - issuer: [https://b.example.com]
            """
        #expect(
            problems(yaml) == [
                "allowReservedIdentities: must be true or false, not the string \"yes please\"",
                "jwt[0].issuer.audiences: must be a list, not the string \"kubernetes\"",
                "jwt[1].issuer: must be a mapping (key: value), not a list",
                "jwt[0].issuer.audiences: at least one audience is required: the client ID the issuer's tokens carry in aud",
                "jwt[1].issuer.url: is required: the issuer's https URL, equal to its tokens' iss",
                "jwt[1].issuer.audiences: at least one audience is required: the client ID the issuer's tokens carry in aud",
            ])
    }

    @Test("numbers, booleans and dates meant as strings must be quoted, as Kubernetes requires")
    func unquotedScalars() throws {
        let yaml = """
            jwt:
              - issuer: {url: "https://a.example.com", audiences: [123]}
                claimValidationRules:
                  - {claim: since, requiredValue: 2026-01-01}
                  - {claim: admin, requiredValue: true}
            """
        #expect(
            problems(yaml) == [
                "jwt[0].issuer.audiences[0]: must be a string, not the number 123 (put it in quotes: \"123\")",
                "jwt[0].claimValidationRules[0].requiredValue: must be a string, not the timestamp 2026-01-01 (put it in quotes: \"2026-01-01\")",
                "jwt[0].claimValidationRules[1].requiredValue: must be a string, not the boolean true (put it in quotes: \"true\")",
                "jwt[0].issuer.audiences: at least one audience is required: the client ID the issuer's tokens carry in aud",
            ])
        let quoted = yaml.replacingOccurrences(of: "[123]", with: "[\"123\"]").replacingOccurrences(
            of: "2026-01-01", with: "\"2026-01-01\""
        ).replacingOccurrences(of: "true}", with: "\"true\"}")
        #expect(try loadFile(quoted).configuration.issuers[0].claimValidationRules[1].requiredValue == "true")
    }

    @Test("invalid YAML, duplicate keys, several documents and an empty file name the file and the line")
    func malformedFiles() {
        #expect(
            problems("jwt:\n  - issuer: {url: \"x\"\n").first?.hasPrefix("/etc/kip/config.yaml: not valid YAML: line ")
                == true)
        #expect(
            problems("jwt: []\njwt: []\n").first?.contains("duplicate key \"jwt\"") == true,
            "\(problems("jwt: []\njwt: []\n"))")
        #expect(problems("jwt: []\n---\njwt: []\n").first?.hasPrefix("/etc/kip/config.yaml: not valid YAML:") == true)
        #expect(
            problems("") == [
                "/etc/kip/config.yaml: is empty; it must hold one YAML mapping (see the README's \"Config file\" section)"
            ])
        #expect(
            problems("- a\n- b\n") == [
                "/etc/kip/config.yaml: must hold a YAML mapping (key: value) at the top level, not a list"
            ])
    }

    @Test("null values read as absent, as Kubernetes reads them")
    func nullIsAbsent() throws {
        let configuration = try loadFile(
            "listenAddr: ~\nreadiness:\njwt:\n  - issuer: {url: \"https://a.example.com\", audiences: [k], discoveryURL: null}\n"
        ).configuration
        #expect(configuration.listenAddress.port == 8080)
        #expect(configuration.issuers[0].discoveryURL == nil)
    }

    @Test("the effective configuration prints every default and shortens CA bundles")
    func effectiveYAML() throws {
        let yaml = """
            jwt:
              - issuer:
                  url: https://idp.example.com
                  audiences: [k]
                  certificateAuthority: |
            \(samplePEM.split(separator: "\n").map { "          " + $0 }.joined(separator: "\n"))
            """
        let text = try loadFile(yaml).configuration.effectiveYAML
        #expect(text.contains("listenAddr: \":8080\"\n"))
        #expect(text.contains("tokenCacheTTL: 10s\n"))
        #expect(text.contains("readiness: all\n"))
        #expect(text.contains("      url: \"https://idp.example.com\"\n"))
        #expect(text.contains("      certificateAuthority: \"<PEM: 1 certificate, sha256 "))
        #expect(!text.contains("MIIBAAAAAAAAAAAA"))
        #expect(text.contains("      username: {claim: \"email\", prefix: \"\"}\n"))
    }

    @Test("Go durations parse and print as Go does")
    func goDurations() {
        #expect(GoDuration.parse("10s") == .seconds(10))
        #expect(GoDuration.parse("1h2m3.5s") == .milliseconds(3_723_500))
        #expect(GoDuration.parse("250ms") == .milliseconds(250))
        #expect(GoDuration.parse("0") == .zero)
        for bad in ["", "10", "s", "1x", "1.2.3s", "--1s"] { #expect(GoDuration.parse(bad) == nil, "\(bad)") }
        #expect(GoDuration.format(.seconds(10)) == "10s")
        #expect(GoDuration.format(.seconds(90)) == "1m30s")
        #expect(GoDuration.format(.seconds(3600)) == "1h0m0s")
        #expect(GoDuration.format(.milliseconds(250)) == "250ms")
        #expect(GoDuration.format(.zero) == "0s")
    }

    @Test("the file's SHA-256 is of its exact bytes")
    func fileHash() {
        #expect(
            ConfigurationFile(path: "x", bytes: Array("abc".utf8)).sha256
                == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    }
}

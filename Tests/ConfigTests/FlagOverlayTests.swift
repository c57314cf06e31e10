import Foundation
import Testing

@testable import Config

/// SPEC §1's rules for flags given beside `--config`.
@Suite("Flags over the config file")
struct FlagOverlayTests {
    private let twoIssuers = """
        listenAddr: ":8080"
        metricsAddr: ":9090"
        upstream: {kubeconfig: /etc/kip/kubeconfig}
        jwt:
          - issuer: {url: "https://a.example.com", audiences: [from-file]}
            name: a
            claimValidationRules:
              - {claim: hd, requiredValue: example.com}
            claimMappings:
              username: {claim: sub, prefix: "a:"}
              groups: {claim: roles, prefix: "a:"}
          - issuer: {url: "https://b.example.com", audiences: [k]}
            name: b
        """

    private func flags(_ set: (inout ProxyFlags) -> Void) -> ProxyFlags {
        var flags = ProxyFlags()
        set(&flags)
        return flags
    }

    @Test("--listen-addr and --metrics-addr replace the file's values; --metrics-addr \"\" disables metrics")
    func addressesReplaced() throws {
        let configuration = try loadFile(
            twoIssuers,
            flags: flags {
                $0.listenAddress = "127.0.0.1:9999"
                $0.metricsAddress = ""
            }
        ).configuration
        #expect(configuration.listenAddress == ListenAddress(host: "127.0.0.1", port: 9999))
        #expect(configuration.metricsAddress == nil)
        #expect(
            problems(twoIssuers, flags: flags { $0.metricsAddress = "9100" }).first?.hasPrefix("--metrics-addr: ")
                == true)
    }

    @Test("--kubeconfig replaces the file's upstream")
    func kubeconfigReplacesUpstream() throws {
        let configuration = try loadFile(twoIssuers, flags: flags { $0.kubeconfig = "/home/me/.kube/config" })
            .configuration
        #expect(configuration.upstream == .kubeconfig(path: "/home/me/.kube/config"))
    }

    @Test("--oidc-issuer-url naming a listed issuer: each flag given overrides that entry's field, nothing else")
    func flagsOverrideMatchingEntry() throws {
        let caFile = FileManager.default.temporaryDirectory.appendingPathComponent("kip-ca-\(UUID()).crt").path
        try samplePEM.write(toFile: caFile, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: caFile) }
        let configuration = try loadFile(
            twoIssuers,
            flags: flags {
                $0.issuerURL = "https://a.example.com"
                $0.clientID = "from-flag"
                $0.groupsPrefix = "flag:"
                $0.caFile = caFile
                $0.requiredClaims = ["tenant=t1"]
                $0.signingAlgorithms = "ES256"
            }
        ).configuration
        #expect(configuration.issuers.count == 2)
        let a = configuration.issuers[0]
        #expect(a.audiences == ["from-flag"])
        #expect(a.claimMappings.usernameClaim == "sub")
        #expect(a.claimMappings.usernamePrefix == "a:")
        #expect(a.claimMappings.groupsClaim == "roles")
        #expect(a.claimMappings.groupsPrefix == "flag:")
        #expect(a.certificateAuthorityPEM == samplePEM)
        #expect(a.claimValidationRules == [ClaimValidationRule(claim: "tenant", requiredValue: "t1")])
        #expect(a.signingAlgorithms == [.es256])
        #expect(a.name == "a")
        let b = configuration.issuers[1]
        #expect(b.audiences == ["k"])
        #expect(b.signingAlgorithms == Set(SigningAlgorithm.allCases))
    }

    @Test("claim flags with --oidc-issuer-url override only that issuer's claims")
    func claimFlagsWithIssuerURL() throws {
        let configuration = try loadFile(
            twoIssuers,
            flags: flags {
                $0.issuerURL = "https://b.example.com"
                $0.usernameClaim = "preferred_username"
                $0.groupsClaim = "teams"
            }
        ).configuration
        #expect(configuration.issuers[0].claimMappings.usernameClaim == "sub")
        #expect(configuration.issuers[0].claimMappings.groupsClaim == "roles")
        #expect(configuration.issuers[1].claimMappings.usernameClaim == "preferred_username")
        #expect(configuration.issuers[1].claimMappings.groupsClaim == "teams")
    }

    @Test("--oidc-issuer-url naming an issuer the file lacks adds it, with the flags-only defaults")
    func flagIssuerAdded() throws {
        let configuration = try loadFile(
            twoIssuers,
            flags: flags {
                $0.issuerURL = "https://c.example.com"
                $0.clientID = "kubernetes"
                $0.usernamePrefix = "c:"
            }
        ).configuration
        #expect(
            configuration.issuers.map(\.url) == [
                "https://a.example.com", "https://b.example.com", "https://c.example.com",
            ])
        let c = configuration.issuers[2]
        #expect(c.audiences == ["kubernetes"])
        #expect(c.name == "c-example-com")
        #expect(
            c.claimMappings
                == ClaimMappings(usernameClaim: "email", usernamePrefix: "c:", groupsClaim: "groups", groupsPrefix: ""))
    }

    @Test("an added flag issuer's problems name the flags")
    func flagIssuerProblems() {
        #expect(
            problems(twoIssuers, flags: flags { $0.issuerURL = "http://c.example.com" }) == [
                "--oidc-issuer-url: \"http://c.example.com\": URL scheme must be https",
                "--oidc-client-id: is required: the audience (client ID) the issuer's tokens carry",
            ])
        #expect(
            problems(
                twoIssuers,
                flags: flags {
                    $0.issuerURL = "https://a.example.com"
                    $0.clientID = ""
                }) == [
                    "--oidc-client-id: at least one audience is required: the client ID the issuer's tokens carry in aud"
                ])
    }

    @Test("--oidc-username-claim / --oidc-groups-claim alone set the claim of every issuer whose mapping names none")
    func claimFlagsFillUnnamedMappings() throws {
        let configuration = try loadFile(
            twoIssuers,
            flags: flags {
                $0.usernameClaim = "upn"
                $0.groupsClaim = "teams"
            }
        ).configuration
        #expect(configuration.issuers[0].claimMappings.usernameClaim == "sub")
        #expect(configuration.issuers[0].claimMappings.groupsClaim == "roles")
        #expect(configuration.issuers[1].claimMappings.usernameClaim == "upn")
        #expect(configuration.issuers[1].claimMappings.groupsClaim == "teams")
    }

    @Test("in an AuthenticationConfiguration, a claim flag fills a missing mapping without demanding a prefix")
    func claimFlagsInAuthenticationConfiguration() throws {
        let yaml = """
            apiVersion: apiserver.config.k8s.io/v1beta1
            kind: AuthenticationConfiguration
            jwt:
              - issuer: {url: "https://idp.example.com", audiences: [k]}
            """
        let issuer = try loadFile(yaml, flags: flags { $0.usernameClaim = "email" }).configuration.issuers[0]
        #expect(issuer.claimMappings.usernameClaim == "email")
        #expect(issuer.claimMappings.usernamePrefix == "")
        #expect(issuer.claimMappings.groupsClaim == nil)
    }

    @Test("issuer flags without --oidc-issuer-url are refused beside a file, by name")
    func issuerFlagsNeedIssuerURL() {
        #expect(
            problems(
                twoIssuers,
                flags: flags {
                    $0.clientID = "k"
                    $0.requiredClaims = ["a=b"]
                }) == [
                    "--oidc-client-id: describes the issuer named by --oidc-issuer-url, which is not given; pass --oidc-issuer-url, or set this in the config file's jwt entries",
                    "--oidc-required-claim: describes the issuer named by --oidc-issuer-url, which is not given; pass --oidc-issuer-url, or set this in the config file's jwt entries",
                ])
    }

    @Test("--config reads the file from disk; a missing file names the flag")
    func configFlag() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("kip-config-\(UUID()).yaml").path
        try twoIssuers.write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let loaded = try ConfigurationLoader.loadWithSource(flags: flags { $0.configFile = path })
        #expect(loaded.configuration.issuers.count == 2)
        #expect(loaded.file?.sha256 == ConfigurationFile(path: path, bytes: Array(twoIssuers.utf8)).sha256)
        #expect(throws: ConfigurationError.self) {
            try ConfigurationLoader.load(flags: flags { $0.configFile = path + ".missing" })
        }
    }
}

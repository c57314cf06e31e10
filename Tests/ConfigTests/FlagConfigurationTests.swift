import Foundation
import Testing

@testable import Config

@Suite("Flags-only configuration (the seed's invocation)")
struct FlagConfigurationTests {
    private func flags(_ set: (inout ProxyFlags) -> Void) -> ProxyFlags {
        var flags = ProxyFlags()
        flags.issuerURL = "https://issuer.example.com/"
        flags.clientID = "kubernetes"
        set(&flags)
        return flags
    }

    private func problems(_ flags: ProxyFlags) -> [String] {
        do {
            _ = try ConfigurationLoader.load(flags: flags)
            return []
        } catch {
            return error.problems.map(\.description)
        }
    }

    @Test("the seed's flags give one issuer with its defaults: email, groups, no prefixes, :8080")
    func seedDefaults() throws {
        let configuration = try ConfigurationLoader.load(flags: flags { _ in })
        #expect(configuration.listenAddress == ListenAddress(host: "", port: 8080))
        #expect(configuration.upstream == .inCluster)
        let issuer = try #require(configuration.issuers.first)
        #expect(configuration.issuers.count == 1)
        #expect(issuer.url == "https://issuer.example.com/")
        #expect(issuer.audiences == ["kubernetes"])
        #expect(
            issuer.claimMappings
                == ClaimMappings(usernameClaim: "email", usernamePrefix: "", groupsClaim: "groups", groupsPrefix: ""))
        #expect(issuer.signingAlgorithms == Set(SigningAlgorithm.allCases))
        #expect(issuer.name == "issuer-example-com")
    }

    @Test("claim, prefix, algorithm, required-claim and kubeconfig flags are applied")
    func everyFlag() throws {
        let configuration = try ConfigurationLoader.load(
            flags: flags {
                $0.usernameClaim = "sub"
                $0.groupsClaim = "roles"
                $0.usernamePrefix = "oidc:"
                $0.groupsPrefix = "oidc:"
                $0.signingAlgorithms = "RS256,ES256"
                $0.requiredClaims = ["hd=example.com", "tier=gold=plus"]
                $0.listenAddress = "127.0.0.1:9443"
                $0.kubeconfig = "/etc/kubeconfig"
            })
        let issuer = try #require(configuration.issuers.first)
        #expect(issuer.claimMappings.usernameClaim == "sub")
        #expect(issuer.claimMappings.groupsClaim == "roles")
        #expect(issuer.claimMappings.usernamePrefix == "oidc:")
        #expect(issuer.claimMappings.groupsPrefix == "oidc:")
        #expect(issuer.signingAlgorithms == [.rs256, .es256])
        #expect(
            issuer.claimValidationRules == [
                ClaimValidationRule(claim: "hd", requiredValue: "example.com"),
                ClaimValidationRule(claim: "tier", requiredValue: "gold=plus"),
            ])
        #expect(configuration.listenAddress == ListenAddress(host: "127.0.0.1", port: 9443))
        #expect(configuration.upstream == .kubeconfig(path: "/etc/kubeconfig"))
    }

    @Test("missing --oidc-issuer-url and --oidc-client-id are both reported, by flag name")
    func missingRequiredFlags() {
        let reported = problems(ProxyFlags())
        #expect(reported.count == 2)
        #expect(reported[0].hasPrefix("--oidc-issuer-url: is required"))
        #expect(reported[1].hasPrefix("--oidc-client-id: is required"))
        #expect(problems(flags { $0.clientID = nil }).first?.hasPrefix("--oidc-client-id") == true)
    }

    @Test(
        "issuer URLs follow kube-apiserver's rules",
        arguments: [
            ("http://issuer.example.com", "URL scheme must be https"),
            ("https://issuer.example.com?x=1", "must not contain a query"),
            ("https://issuer.example.com#frag", "must not contain a fragment"),
            ("https://user:pw@issuer.example.com", "must not contain a username or password"),
            ("issuer.example.com", "URL scheme must be https"),
            ("", "is required"),
        ])
    func issuerURLRules(url: String, message: String) {
        let reported = problems(flags { $0.issuerURL = url })
        #expect(reported.contains { $0.hasPrefix("--oidc-issuer-url:") && $0.contains(message) }, "\(reported)")
    }

    @Test("bad values name their flag: algorithms, required claims, listen address, CA file")
    func badValues() {
        #expect(
            problems(flags { $0.signingAlgorithms = "RS256,HS256" }) == [
                "--oidc-signing-algs: \"HS256\" is not supported; choose from ES256, ES384, ES512, PS256, PS384, PS512, RS256, RS384, RS512"
            ])
        #expect(problems(flags { $0.requiredClaims = ["novalue"] }).first?.hasPrefix("--oidc-required-claim") == true)
        #expect(problems(flags { $0.requiredClaims = ["a=1", "a=2"] }).first?.contains("more than once") == true)
        #expect(problems(flags { $0.listenAddress = "8080" }).first?.hasPrefix("--listen-addr") == true)
        #expect(
            problems(flags { $0.caFile = "/nonexistent/ca.crt" }).first?.hasPrefix("--oidc-ca-file: cannot read")
                == true)
        #expect(problems(flags { $0.usernameClaim = "" }).first == "--oidc-username-claim: must not be empty")
    }

    @Test("the TLS flags come as a pair of readable files")
    func tlsFlags() {
        #expect(
            problems(flags { $0.tlsCertFile = "/nonexistent.crt" }) == [
                "--tls-cert-file: cannot read \"/nonexistent.crt\": no such file, or not readable",
                "--tls-private-key-file: is required: the proxy serves HTTPS with a certificate and its private key",
            ])
    }

    @Test("a CA file without a PEM certificate is refused, naming the file")
    func caFileNotPEM() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("kip-not-a-ca-\(UUID()).crt").path
        try "hello".write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        #expect(
            problems(flags { $0.caFile = path }) == [
                "--oidc-ca-file: \"\(path)\" holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
            ])
    }

    @Test(
        "listen addresses in Go's forms",
        arguments: [
            (":8080", "", 8080), ("127.0.0.1:8080", "127.0.0.1", 8080), ("[::1]:9090", "::1", 9090),
            ("localhost:0", "localhost", 0),
        ])
    func listenAddresses(text: String, host: String, port: Int) throws {
        #expect(try ListenAddress(parsing: text, path: "--listen-addr") == ListenAddress(host: host, port: port))
    }

    @Test(
        "malformed listen addresses are refused",
        arguments: ["8080", ":http", "::1:80", "[::1:80", "1.2.3.4:99999", ":-1"])
    func badListenAddresses(text: String) {
        #expect(throws: ConfigurationError.self) { try ListenAddress(parsing: text, path: "--listen-addr") }
    }

    @Test("issuer names for /readyz are derived from the URL's host and path")
    func derivedNames() {
        #expect(IssuerConfiguration.defaultName(forURL: "https://accounts.google.com") == "accounts-google-com")
        #expect(
            IssuerConfiguration.defaultName(forURL: "https://idp.example.com:8443/realms/Team/")
                == "idp-example-com-8443-realms-team")
    }
}

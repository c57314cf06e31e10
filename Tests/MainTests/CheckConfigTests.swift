import Foundation
import Testbed
import Testing

/// `kube-impersonate-proxy check-config`, through the real binary.
@Suite("check-config through the real binary")
struct CheckConfigTests {
    /// A scratch directory holding `files` (name → content), removed after `body`.
    private func withFiles(_ files: [String: String], _ body: (URL) throws -> Void) throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("kip-check-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        for (name, content) in files {
            try content.write(to: directory.appendingPathComponent(name), atomically: true, encoding: .utf8)
        }
        try body(directory)
    }

    @Test("a valid file: exit 0, the effective configuration on stdout, CA bundles shortened")
    func validFile() throws {
        let ca = try TestCertificateAuthority().certificatePEM
        let caBlock = ca.split(separator: "\n").map { "          " + $0 }.joined(separator: "\n")
        let yaml = """
            readiness: any
            jwt:
              - issuer:
                  url: https://idp-a.example.com
                  audiences: [kubernetes]
                  certificateAuthority: |
            \(caBlock)
                name: idp-a
                claimMappings:
                  groups: {claim: groups, prefix: "idp-a:"}
              - issuer: {url: "https://idp-b.example.com", audiences: [kubernetes]}

            """
        try withFiles(["config.yaml": yaml]) { directory in
            let path = directory.appendingPathComponent("config.yaml").path
            let outcome = try ProxyBinary.run(["check-config", "--config", path, "--listen-addr", "127.0.0.1:7000"])
            #expect(outcome.status == 0, "\(outcome.standardError)")
            #expect(outcome.standardOutput.hasPrefix("# \(path): valid (sha256 "))
            #expect(outcome.standardOutput.contains("listenAddr: \"127.0.0.1:7000\"\n"))
            #expect(outcome.standardOutput.contains("readiness: any\n"))
            #expect(outcome.standardOutput.contains("  - name: \"idp-a\"\n"))
            #expect(outcome.standardOutput.contains("      groups: {claim: \"groups\", prefix: \"idp-a:\"}\n"))
            #expect(outcome.standardOutput.contains("  - name: \"idp-b-example-com\"\n"))
            #expect(outcome.standardOutput.contains("certificateAuthority: \"<PEM: 1 certificate, sha256 "))
            #expect(!outcome.standardOutput.contains("BEGIN CERTIFICATE"))
            #expect(outcome.standardError.isEmpty)
        }
    }

    @Test("an invalid file: exit 1, every problem on its own line with its path")
    func invalidFile() throws {
        let yaml = """
            readiness: sometimes
            jwt:
              - issuer: {url: "http://idp-a.example.com", audiences: [a, b]}
              - issuer: {urll: "https://idp-b.example.com", audiences: [k]}
                claimMappings:
                  username: {expression: "claims.sub"}

            """
        try withFiles(["config.yaml": yaml]) { directory in
            let outcome = try ProxyBinary.run(
                ["check-config", "--config", directory.appendingPathComponent("config.yaml").path])
            #expect(outcome.status == 1)
            #expect(outcome.standardOutput.isEmpty)
            let lines = outcome.standardError.split(separator: "\n").map(String.init)
            #expect(
                lines == [
                    "jwt[1].issuer.urll: unknown field (did you mean \"url\"?)",
                    "readiness: \"sometimes\" is not supported; use all (every issuer must be ready) or any (one is enough)",
                    "jwt[0].issuer.url: \"http://idp-a.example.com\": URL scheme must be https",
                    "jwt[0].issuer.audienceMatchPolicy: audienceMatchPolicy must be MatchAny for multiple audiences",
                    "jwt[1].issuer.url: is required: the issuer's https URL, equal to its tokens' iss",
                    "jwt[1].claimMappings.username.expression: CEL expressions are not supported yet; use claim (and prefix), or remove this field",
                ], "\(outcome.standardError)")
        }
    }

    @Test("a missing file and an unreadable upstream file are problems; usage errors still exit 2")
    func missingFilesAndUsage() throws {
        let missing = try ProxyBinary.run(["check-config", "--config", "/nonexistent/config.yaml"])
        #expect(missing.status == 1)
        #expect(
            missing.standardError
                == "--config: cannot read \"/nonexistent/config.yaml\": no such file, or not readable\n")

        let yaml = """
            upstream: {server: "https://10.0.0.1:6443", tokenFile: /nonexistent/token}
            jwt:
              - issuer: {url: "https://idp.example.com", audiences: [k]}

            """
        try withFiles(["config.yaml": yaml]) { directory in
            let outcome = try ProxyBinary.run(
                ["check-config", "--config", directory.appendingPathComponent("config.yaml").path])
            #expect(outcome.status == 1)
            #expect(
                outcome.standardError
                    == "upstream.tokenFile: cannot read \"/nonexistent/token\": no such file, or not readable\n")
        }

        let usage = try ProxyBinary.run(["check-config", "--no-such-flag"])
        #expect(usage.status == 2)
    }

    @Test("the seed's flags alone check too")
    func flagsOnly() throws {
        let outcome = try ProxyBinary.run([
            "check-config", "--oidc-issuer-url=https://idp.example.com", "--oidc-client-id=kubernetes",
        ])
        #expect(outcome.status == 0, "\(outcome.standardError)")
        #expect(outcome.standardOutput.hasPrefix("# flags: valid\n"))
        #expect(outcome.standardOutput.contains("      url: \"https://idp.example.com\"\n"))
    }

    @Test("serving with an invalid file exits 1 with the problems; bad flags alone still exit 2")
    func servingRefusesInvalidFile() throws {
        try withFiles(["config.yaml": "jwt:\n  - issuer: {url: \"http://idp.example.com\", audiences: [k]}\n"]) {
            directory in
            let path = directory.appendingPathComponent("config.yaml").path
            let outcome = try ProxyBinary.run(["--config", path])
            #expect(outcome.status == 1)
            #expect(outcome.standardError.contains("invalid configuration in \(path):\n"))
            #expect(
                outcome.standardError.contains(
                    "jwt[0].issuer.url: \"http://idp.example.com\": URL scheme must be https"))
        }
        let badFlag = try ProxyBinary.run(["--oidc-issuer-url=https://idp.example.com", "--listen-addr=8080"])
        #expect(badFlag.status == 2)
    }

    @Test(
        "the examples' config files pass check-config",
        arguments: [
            "multi-issuer/config.yaml", "authentication-configuration/authentication-config.yaml",
        ])
    func examples(file: String) throws {
        let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let path = repository.appendingPathComponent("examples").appendingPathComponent(file).path
        let outcome = try ProxyBinary.run(["check-config", "--config", path])
        #expect(outcome.status == 0, "\(outcome.standardError)")
        #expect(outcome.standardOutput.contains("kind: ProxyConfiguration\n"))
    }
}

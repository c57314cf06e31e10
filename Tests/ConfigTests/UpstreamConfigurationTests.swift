import Foundation
import Testing

@testable import Config

@Suite("Where the API server is: in-cluster and kubeconfig")
struct UpstreamConfigurationTests {
    private func temporaryDirectory() throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("kip-\(UUID())").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    private let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"

    @Test("in-cluster: service host and port from the environment, token and CA from the service-account mount")
    func inCluster() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try "token".write(toFile: directory + "/token", atomically: true, encoding: .utf8)
        try pem.write(toFile: directory + "/ca.crt", atomically: true, encoding: .utf8)
        let upstream = try UpstreamConfiguration.inCluster(
            environment: ["KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"],
            serviceAccountDirectory: directory)
        #expect(upstream.serverURL == "https://10.96.0.1:443")
        #expect(upstream.certificateAuthorityPEM == pem)
        #expect(upstream.credential == .bearerTokenFile(path: directory + "/token"))
    }

    @Test("outside a cluster with no kubeconfig, the error says what to pass")
    func notInCluster() {
        #expect {
            try UpstreamConfiguration.inCluster(environment: [:], serviceAccountDirectory: "/nonexistent")
        } throws: { error in
            "\(error)".contains("pass --kubeconfig FILE")
        }
    }

    @Test("kubeconfig: the current context's server, CA data and token")
    func kubeconfigWithToken() throws {
        let text = """
            apiVersion: v1
            kind: Config
            preferences: {}
            clusters:
            - name: other
              cluster: {server: "https://other:6443"}
            - name: prod
              cluster:
                server: https://[2001:db8::1]:6443
                certificate-authority-data: \(Data(pem.utf8).base64EncodedString())
                tls-server-name: kubernetes
            users:
            - name: proxy
              user: {token: abc123}
            contexts:
            - name: prod
              context: {cluster: prod, user: proxy, namespace: default}
            current-context: prod
            """
        let upstream = try UpstreamConfiguration.fromKubeconfig(text: text, file: "/k/config")
        #expect(upstream.host == "2001:db8::1")
        #expect(upstream.port == 6443)
        #expect(upstream.serverURL == "https://[2001:db8::1]:6443")
        #expect(upstream.certificateAuthorityPEM == pem)
        #expect(upstream.tlsServerName == "kubernetes")
        #expect(upstream.credential == .bearerToken("abc123"))
    }

    @Test("kubeconfig: relative files resolve against the kubeconfig's folder; client certificates are read")
    func kubeconfigWithFiles() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try pem.write(toFile: directory + "/ca.crt", atomically: true, encoding: .utf8)
        try "CERT".write(toFile: directory + "/client.crt", atomically: true, encoding: .utf8)
        try "KEY".write(toFile: directory + "/client.key", atomically: true, encoding: .utf8)
        let text = """
            clusters:
            - name: c
              cluster: {server: "https://api.example.com", certificate-authority: ca.crt}
            users:
            - name: u
              user: {client-certificate: client.crt, client-key: client.key}
            contexts:
            - name: x
              context: {cluster: c, user: u}
            current-context: x
            """
        try text.write(toFile: directory + "/config", atomically: true, encoding: .utf8)
        let upstream = try UpstreamConfiguration.fromKubeconfig(file: directory + "/config")
        #expect(upstream.port == 443)
        #expect(upstream.certificateAuthorityPEM == pem)
        #expect(
            upstream.credential
                == .clientCertificate(
                    certificatePEM: "CERT", privateKeyPEM: "KEY", certificateFile: directory + "/client.crt",
                    keyFile: directory + "/client.key"))
    }

    @Test(
        "kubeconfig problems are reported clearly",
        arguments: [
            ("current-context: x\n", "is not among its contexts"),
            ("clusters: []\n", "current-context is not set"),
            (
                "clusters: [{name: c, cluster: {server: 'http://x'}}]\ncontexts: [{name: x, context: {cluster: c}}]\ncurrent-context: x\n",
                "is not an https:// URL"
            ),
            (
                "clusters: [{name: c, cluster: {server: 'https://x'}}]\nusers: [{name: u, user: {exec: {command: aws}}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n",
                "exec credential plugins are not supported"
            ),
            ("clusters: {not: a list}\n", "not a valid kubeconfig"),
            // Rancher's proxied cluster URL: the prefix would be dropped from every request.
            (
                "clusters: [{name: c, cluster: {server: 'https://rancher.example/k8s/clusters/c-1'}}]\ncontexts: [{name: x, context: {cluster: c}}]\ncurrent-context: x\n",
                "/k/config: clusters[c].server: \"https://rancher.example/k8s/clusters/c-1\": give only https://host[:port], without a path, query or user"
            ),
            (
                "clusters: [{name: c, cluster: {server: 'https://x', proxy-url: 'http://proxy:3128'}}]\ncontexts: [{name: x, context: {cluster: c}}]\ncurrent-context: x\n",
                "/k/config: clusters[c].proxy-url: is not supported"
            ),
        ])
    func kubeconfigProblems(text: String, message: String) {
        #expect {
            try UpstreamConfiguration.fromKubeconfig(text: text, file: "/k/config")
        } throws: { error in
            "\(error)".contains(message)
        }
    }
}

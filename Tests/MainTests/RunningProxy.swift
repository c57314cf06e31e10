import Foundation
import Testbed
import Testing

/// The real binary serving with `--config`, in front of a stand-in issuer and API server, for
/// the reload tests. The config file and everything it needs live in a fresh directory.
final class RunningProxy: Sendable {
    let issuer: StandInIssuer
    let api: StandInAPIServer
    let directory: URL
    let port: Int
    let process: Process

    var configPath: String { directory.appendingPathComponent("config.yaml").path }
    var logURL: URL { directory.appendingPathComponent("proxy.log") }

    /// Starts the proxy with a config file made by `configYAML` at `configPath`, or where
    /// `configAt` puts it (a ConfigMap-style layout); or, with `flagsOnly`, the seed's flags.
    private static func start(
        configAt: ((URL, String) throws -> String)?, groupsPrefix: String, flagsOnly: Bool, upstreamHTTP2: Bool,
        unprivileged: Bool, upstreamClientCertificate: UpstreamClientCertificate?
    ) async throws -> RunningProxy {
        let issuer = try await StandInIssuer()
        let api = try await StandInAPIServer(
            http2: upstreamHTTP2, clientCertificateAuthority: upstreamClientCertificate?.authority)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("kip-reload-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        var kubeconfig = api.kubeconfig
        if let upstreamClientCertificate {
            try upstreamClientCertificate.identity.certificatePEM.write(
                to: directory.appendingPathComponent("client.crt"), atomically: true, encoding: .utf8)
            try upstreamClientCertificate.identity.privateKeyPEM.write(
                to: directory.appendingPathComponent("client.key"), atomically: true, encoding: .utf8)
            kubeconfig = kubeconfig.replacingOccurrences(
                of: "{token: \(api.expectedToken)}", with: "{client-certificate: client.crt, client-key: client.key}")
        }
        try kubeconfig.write(to: directory.appendingPathComponent("kubeconfig"), atomically: true, encoding: .utf8)
        var arguments: [String]
        if flagsOnly {
            let caFile = directory.appendingPathComponent("issuer-ca.crt")
            try issuer.certificateAuthority.certificatePEM.write(to: caFile, atomically: true, encoding: .utf8)
            arguments = [
                "--oidc-issuer-url=\(issuer.url)", "--oidc-client-id=kubernetes", "--oidc-ca-file", caFile.path,
                "--oidc-groups-prefix=\(groupsPrefix)", "--metrics-addr=127.0.0.1:0",
            ]
        } else {
            let yaml = configYAML(issuer: issuer, groupsPrefix: groupsPrefix)
            let configPath: String
            if let configAt {
                configPath = try configAt(directory, yaml)
            } else {
                configPath = directory.appendingPathComponent("config.yaml").path
                try yaml.write(toFile: configPath, atomically: true, encoding: .utf8)
            }
            arguments = ["--config", configPath]
        }
        let port = try freePort()
        arguments += [
            "--kubeconfig", directory.appendingPathComponent("kubeconfig").path, "--listen-addr=127.0.0.1:\(port)",
            "--v=2",
        ]
        let process = try ProxyBinary.start(
            arguments, log: directory.appendingPathComponent("proxy.log"),
            unprivilegedCopyIn: unprivileged ? directory : nil)
        let proxy = RunningProxy(issuer: issuer, api: api, directory: directory, port: port, process: process)
        try await proxy.waitUntilReady()
        return proxy
    }

    /// The proxy's client certificate for the API server, written to `client.crt` and
    /// `client.key` beside the kubeconfig, and the authority the stand-in then requires.
    struct UpstreamClientCertificate {
        var authority: TestCertificateAuthority
        var identity: ServerIdentity
    }

    /// Starts a proxy (as `start` does), runs `body` with it, and stops it whatever happens.
    /// With `upstreamHTTP2`, the stand-in API server offers HTTP/2 as kube-apiserver does; with
    /// `unprivileged`, the proxy runs as the container image's user (see `ProxyBinary.start`);
    /// with `upstreamClientCertificate`, the kubeconfig gives it a client certificate in files.
    static func run(
        configAt: ((URL, String) throws -> String)? = nil, groupsPrefix: String = "v1:", flagsOnly: Bool = false,
        upstreamHTTP2: Bool = false, unprivileged: Bool = false,
        upstreamClientCertificate: UpstreamClientCertificate? = nil, _ body: (RunningProxy) async throws -> Void
    ) async throws {
        let proxy = try await start(
            configAt: configAt, groupsPrefix: groupsPrefix, flagsOnly: flagsOnly, upstreamHTTP2: upstreamHTTP2,
            unprivileged: unprivileged, upstreamClientCertificate: upstreamClientCertificate)
        do {
            try await body(proxy)
        } catch {
            await proxy.stop()
            throw error
        }
        await proxy.stop()
    }

    private init(issuer: StandInIssuer, api: StandInAPIServer, directory: URL, port: Int, process: Process) {
        self.issuer = issuer
        self.api = api
        self.directory = directory
        self.port = port
        self.process = process
    }

    /// A proxy-shape config trusting `issuer`, mapping groups with `groupsPrefix`.
    /// The metrics listener is on a free port (`127.0.0.1:0`) unless `metricsAddress` says otherwise.
    static func configYAML(
        issuer: StandInIssuer, groupsPrefix: String, url: String? = nil, metricsAddress: String = "127.0.0.1:0"
    ) -> String {
        let ca = issuer.certificateAuthority.certificatePEM.split(separator: "\n").map { "          " + $0 }
            .joined(separator: "\n")
        return """
            metricsAddr: "\(metricsAddress)"
            jwt:
              - issuer:
                  url: "\(url ?? issuer.url)"
                  audiences: [kubernetes]
                  certificateAuthority: |
            \(ca)
                name: standin
                claimMappings:
                  username: {claim: email}
                  groups: {claim: groups, prefix: "\(groupsPrefix)"}

            """
    }

    var log: String { (try? String(contentsOf: logURL, encoding: .utf8)) ?? "" }

    func waitUntilReady() async throws {
        var ready = false
        for _ in 0..<300 where !ready {
            try await Task.sleep(for: .milliseconds(50))
            let response = try? await RawHTTPClient.send(
                "GET /readyz HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n", port: port, timeout: .seconds(2))
            ready = response?.status == 200
        }
        try #require(ready, "the proxy never became ready:\n\(log)")
    }

    /// Writes `text` over the config file the way an editor or `kubectl cp` would (new file, renamed in).
    func writeConfig(_ text: String) throws {
        try text.write(toFile: configPath, atomically: true, encoding: .utf8)
    }

    func hangUp() {
        kill(process.processIdentifier, SIGHUP)
    }

    /// Waits until the log holds `count` lines containing every string of `fragments`.
    func waitForLog(_ fragments: [String], count: Int = 1, timeout: Duration = .seconds(15)) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let matching = log.split(separator: "\n").filter { line in fragments.allSatisfy { line.contains($0) } }
            if matching.count >= count { return }
            try await Task.sleep(for: .milliseconds(20))
        }
        Issue.record("no \(count) log line(s) with \(fragments) within \(timeout):\n\(log)")
        throw TestbedError("log line not found")
    }

    func logLines(containing fragments: [String]) -> Int {
        log.split(separator: "\n").filter { line in fragments.allSatisfy { line.contains($0) } }.count
    }

    /// One GET through the proxy with a fresh token; returns the status and the groups the API server saw.
    func get(_ path: String = "/api/v1/namespaces") async throws -> (status: Int?, groups: [String]) {
        let token = try issuer.mint()
        let before = api.requests.count
        let response = try await RawHTTPClient.send(
            "GET \(path) HTTP/1.1\r\nHost: p\r\nAuthorization: Bearer \(token)\r\nConnection: close\r\n\r\n", port: port
        )
        let received = api.requests
        let groups = received.count > before ? received[received.count - 1].values("Impersonate-Group") : []
        return (response.status, groups)
    }

    func stop() async {
        if process.isRunning {
            process.terminate()
            for _ in 0..<100 where process.isRunning { try? await Task.sleep(for: .milliseconds(50)) }
        }
        await api.stop()
        await issuer.stop()
        try? FileManager.default.removeItem(at: directory)
    }
}

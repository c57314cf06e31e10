import Foundation
import Testbed

/// A kubectl release the end-to-end tests drive, from `.ci-cache/` (put there by
/// `scripts/fetch-kubectl`, which `scripts/test` runs) or from an environment variable.
enum KubectlRelease: Sendable {
    /// kubectl 1.33: WebSocket (v5.channel.k8s.io) exec; port-forward's SPDY tunnelled in a WebSocket.
    case current
    /// kubectl 1.20 (Debian's kubernetes-client): SPDY/3.1 for exec and port-forward.
    case v120

    var path: String {
        let (variable, cached) =
            switch self {
            case .current: ("KIP_KUBECTL", ".ci-cache/kubectl/kubectl")
            case .v120: ("KIP_KUBECTL_120", ".ci-cache/kubectl-1.20/kubectl")
            }
        if let path = ProcessInfo.processInfo.environment[variable] { return path }
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        return root.appendingPathComponent(cached).path
    }

    var name: String { self == .current ? "kubectl 1.33" : "kubectl 1.20" }
}

/// The real binary serving HTTPS in front of the stand-ins, and a real kubectl pointed at it.
final class KubectlBench: @unchecked Sendable {
    let issuer: StandInIssuer
    let api: StandInAPIServer
    let directory: URL
    let port: Int
    let proxy: Process
    let token: String
    let release: KubectlRelease

    static func start(
        kubectl release: KubectlRelease = .current, proxyArguments: [String] = []
    ) async throws -> KubectlBench {
        guard FileManager.default.isExecutableFile(atPath: release.path) else {
            throw TestbedError("no \(release.name) at \(release.path): run scripts/fetch-kubectl (scripts/test does)")
        }
        let issuer = try await StandInIssuer()
        // HTTP/2 offered, as kube-apiserver does: watches and `logs -f` go to it as streams.
        let api = try await StandInAPIServer(http2: true)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("kip-kubectl-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let proxyAuthority = try TestCertificateAuthority(commonName: "proxy test CA")
        let serving = try proxyAuthority.issueServerCertificate()
        let files: [(String, String)] = [
            ("issuer-ca.crt", issuer.certificateAuthority.certificatePEM),
            ("proxy-ca.crt", proxyAuthority.certificatePEM),
            ("proxy.crt", serving.certificatePEM),
            ("proxy.key", serving.privateKeyPEM),
            (
                "upstream.kubeconfig",
                api.kubeconfig
            ),
        ]
        for (name, contents) in files {
            try contents.write(to: directory.appendingPathComponent(name), atomically: true, encoding: .utf8)
        }
        let port = try freePort()
        let proxy = try ProxyBinary.start(
            [
                "--oidc-issuer-url=\(issuer.url)", "--oidc-client-id=kubernetes",
                "--oidc-ca-file=\(directory.appendingPathComponent("issuer-ca.crt").path)",
                "--kubeconfig=\(directory.appendingPathComponent("upstream.kubeconfig").path)",
                "--listen-addr=127.0.0.1:\(port)", "--metrics-addr=127.0.0.1:0",
                "--tls-cert-file=\(directory.appendingPathComponent("proxy.crt").path)",
                "--tls-private-key-file=\(directory.appendingPathComponent("proxy.key").path)",
            ] + proxyArguments, log: directory.appendingPathComponent("proxy.log"))
        let bench = KubectlBench(
            issuer: issuer, api: api, directory: directory, port: port, proxy: proxy, token: try issuer.mint(),
            release: release)
        try await bench.waitUntilReady()
        return bench
    }

    private init(
        issuer: StandInIssuer, api: StandInAPIServer, directory: URL, port: Int, proxy: Process, token: String,
        release: KubectlRelease
    ) {
        self.issuer = issuer
        self.api = api
        self.directory = directory
        self.port = port
        self.proxy = proxy
        self.token = token
        self.release = release
    }

    private func waitUntilReady() async throws {
        for _ in 0..<300 {
            let outcome = try? await kubectl(["get", "--raw", "/readyz"])
            if outcome?.status == 0 { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw TestbedError("the proxy never became ready:\n\(log)")
    }

    var log: String {
        (try? String(contentsOf: directory.appendingPathComponent("proxy.log"), encoding: .utf8)) ?? ""
    }

    /// kubectl's arguments to reach the proxy over its own TLS with `token`.
    func connectionArguments(token: String? = nil) -> [String] {
        [
            "--server=https://127.0.0.1:\(port)",
            "--certificate-authority=\(directory.appendingPathComponent("proxy-ca.crt").path)",
            "--token=\(token ?? self.token)", "--request-timeout=20s",
        ]
    }

    /// Runs kubectl to completion (stdin from `input`), with a clean home so no user config leaks
    /// in. One still running after `timeout` is terminated: a hang fails the test, never stalls it.
    func kubectl(
        _ arguments: [String], token: String? = nil, input: Data? = nil, timeout: Duration = .seconds(60)
    ) async throws -> ProxyBinary.Outcome {
        let process = kubectlProcess(arguments, token: token)
        let watched = WatchedProcess(process)
        let output = Pipe()
        let error = Pipe()
        let stdin = Pipe()
        process.standardOutput = output
        process.standardError = error
        process.standardInput = stdin
        try process.run()
        let watchdog = Task {
            try await Task.sleep(for: timeout)
            watched.terminate()
        }
        defer { watchdog.cancel() }
        if let input { stdin.fileHandleForWriting.write(input) }
        try stdin.fileHandleForWriting.close()
        let outputData = output.fileHandleForReading.readDataToEndOfFile()
        let errorData = error.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return ProxyBinary.Outcome(
            status: process.terminationStatus, standardOutput: String(decoding: outputData, as: UTF8.self),
            standardError: String(decoding: errorData, as: UTF8.self))
    }

    /// A kubectl process, not started, for commands that stream (`get -w`, `logs -f`).
    func kubectlProcess(_ arguments: [String], token: String? = nil) -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: release.path)
        process.arguments = connectionArguments(token: token) + arguments
        process.environment = [
            "HOME": directory.path, "KUBECONFIG": directory.appendingPathComponent("none").path,
            "PATH": "/usr/bin:/bin",
        ]
        return process
    }

    /// Starts a streaming kubectl command; its standard output is collected as it comes.
    func startStreaming(_ arguments: [String]) throws -> (process: Process, output: StreamingOutput) {
        let process = kubectlProcess(arguments)
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        let output = StreamingOutput(pipe)
        try process.run()
        return (process, output)
    }

    func stop() async {
        if proxy.isRunning { proxy.terminate() }
        proxy.waitUntilExit()
        await api.stop()
        await issuer.stop()
        try? FileManager.default.removeItem(at: directory)
    }

    static func with(
        kubectl release: KubectlRelease = .current, proxyArguments: [String] = [],
        _ body: (KubectlBench) async throws -> Void
    ) async throws {
        let bench = try await start(kubectl: release, proxyArguments: proxyArguments)
        do {
            try await body(bench)
        } catch {
            await bench.stop()
            throw error
        }
        await bench.stop()
    }
}

/// Collects a streaming process's standard output as it comes.
final class StreamingOutput: @unchecked Sendable {
    private let lock = NSLock()
    private var data = Data()

    init(_ pipe: Pipe) {
        pipe.fileHandleForReading.readabilityHandler = { [weak self] handle in
            let chunk = handle.availableData
            guard let self else { return }
            self.lock.lock()
            self.data.append(chunk)
            self.lock.unlock()
        }
    }

    var text: String {
        lock.lock()
        defer { lock.unlock() }
        return String(decoding: data, as: UTF8.self)
    }

    func wait(timeout: Duration = .seconds(20), until condition: (String) -> Bool) async throws -> Bool {
        let deadline = ContinuousClock.now + timeout
        while !condition(text) {
            if ContinuousClock.now >= deadline { return false }
            try await Task.sleep(for: .milliseconds(20))
        }
        return true
    }
}

/// A process a watchdog may end from another task.
private final class WatchedProcess: @unchecked Sendable {
    private let process: Process

    init(_ process: Process) {
        self.process = process
    }

    func terminate() {
        if process.isRunning { process.terminate() }
    }
}

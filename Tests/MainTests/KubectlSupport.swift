import Foundation
import Testbed

/// The real binary serving HTTPS in front of the stand-ins, and a real kubectl pointed at it.
/// kubectl comes from `.ci-cache/kubectl/kubectl` (put there by `scripts/fetch-kubectl`, which
/// `scripts/test` runs) or from `$KIP_KUBECTL`.
final class KubectlBench: @unchecked Sendable {
    let issuer: StandInIssuer
    let api: StandInAPIServer
    let directory: URL
    let port: Int
    let proxy: Process
    let token: String

    static var kubectlPath: String {
        if let path = ProcessInfo.processInfo.environment["KIP_KUBECTL"] { return path }
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        return root.appendingPathComponent(".ci-cache/kubectl/kubectl").path
    }

    static func start() async throws -> KubectlBench {
        guard FileManager.default.isExecutableFile(atPath: kubectlPath) else {
            throw TestbedError("no kubectl at \(kubectlPath): run scripts/fetch-kubectl (scripts/test does)")
        }
        let issuer = try await StandInIssuer()
        let api = try await StandInAPIServer()
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
            ], log: directory.appendingPathComponent("proxy.log"))
        let bench = KubectlBench(
            issuer: issuer, api: api, directory: directory, port: port, proxy: proxy, token: try issuer.mint())
        try await bench.waitUntilReady()
        return bench
    }

    private init(
        issuer: StandInIssuer, api: StandInAPIServer, directory: URL, port: Int, proxy: Process, token: String
    ) {
        self.issuer = issuer
        self.api = api
        self.directory = directory
        self.port = port
        self.proxy = proxy
        self.token = token
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

    /// Runs kubectl to completion (stdin from `input`), with a clean home so no user config leaks in.
    func kubectl(_ arguments: [String], token: String? = nil, input: Data? = nil) async throws -> ProxyBinary.Outcome {
        let process = kubectlProcess(arguments, token: token)
        let output = Pipe()
        let error = Pipe()
        let stdin = Pipe()
        process.standardOutput = output
        process.standardError = error
        process.standardInput = stdin
        try process.run()
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
        process.executableURL = URL(fileURLWithPath: Self.kubectlPath)
        process.arguments = connectionArguments(token: token) + arguments
        process.environment = [
            "HOME": directory.path, "KUBECONFIG": directory.appendingPathComponent("none").path,
            "PATH": "/usr/bin:/bin",
        ]
        return process
    }

    func stop() async {
        if proxy.isRunning { proxy.terminate() }
        proxy.waitUntilExit()
        await api.stop()
        await issuer.stop()
        try? FileManager.default.removeItem(at: directory)
    }

    static func with(_ body: (KubectlBench) async throws -> Void) async throws {
        let bench = try await start()
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

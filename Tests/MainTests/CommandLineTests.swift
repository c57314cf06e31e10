import Foundation
import Testbed
import Testing

@Suite("The command line, through the real binary")
struct CommandLineTests {
    @Test("no flags: exit 2, naming the missing flags")
    func missingFlags() throws {
        let outcome = try ProxyBinary.run([])
        #expect(outcome.status == 2)
        #expect(outcome.standardError.contains("--oidc-issuer-url: is required"))
        #expect(outcome.standardError.contains("--oidc-client-id: is required"))
    }

    @Test("an http:// issuer: exit 2, naming the flag and the rule")
    func httpIssuer() throws {
        let outcome = try ProxyBinary.run(["--oidc-issuer-url", "http://idp.example.com", "--oidc-client-id", "k"])
        #expect(outcome.status == 2)
        #expect(
            outcome.standardError.contains("--oidc-issuer-url: \"http://idp.example.com\": URL scheme must be https"))
    }

    @Test("an unknown flag: exit 2")
    func unknownFlag() throws {
        let outcome = try ProxyBinary.run(["--oidc-isuer-url=https://x"])
        #expect(outcome.status == 2)
        #expect(outcome.standardError.contains("Unknown option"))
    }

    @Test(
        "a duration flag that is not a duration: exit 2, naming the flag and the form",
        arguments: [
            ("--upgrade-idle-timeout", "ten"), ("--upgrade-idle-timeout", "5x"), ("--upgrade-idle-timeout", "-1s"),
            ("--upgrade-idle-timeout", "99999999999999999999h"), ("--shutdown-grace-period", "30"),
        ])
    func badDuration(flag: String, value: String) throws {
        let outcome = try ProxyBinary.run([
            "--oidc-issuer-url=https://idp.example.com", "--oidc-client-id=k", "\(flag)=\(value)",
        ])
        #expect(outcome.status == 2)
        #expect(outcome.standardError.contains("\(flag): \"\(value)\" is not a duration; write it like 30s"))
    }

    @Test("outside a cluster without --kubeconfig: exit 1, saying what to pass")
    func noUpstream() throws {
        let outcome = try ProxyBinary.run(["--oidc-issuer-url=https://idp.example.com", "--oidc-client-id=k"])
        #expect(outcome.status == 1)
        #expect(outcome.standardError.contains("pass --kubeconfig FILE"))
    }

    @Test("--version and --help")
    func versionAndHelp() throws {
        let version = try ProxyBinary.run(["--version"])
        #expect(version.status == 0)
        #expect(version.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines) == "0.1.0")
        let help = try ProxyBinary.run(["--help"])
        #expect(help.status == 0)
        for flag in [
            "--oidc-issuer-url", "--oidc-client-id", "--oidc-username-claim", "--oidc-groups-claim",
            "--listen-addr", "--kubeconfig", "--oidc-ca-file",
        ] {
            #expect(help.standardOutput.contains(flag), "\(flag) missing from --help")
        }
    }

    @Test("the seed's invocation serves end to end, and SIGTERM stops it with exit 0")
    func seedInvocationEndToEnd() async throws {
        let issuer = try await StandInIssuer()
        let api = try await StandInAPIServer()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("kip-main-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        try issuer.certificateAuthority.certificatePEM.write(
            to: directory.appendingPathComponent("issuer-ca.crt"), atomically: true, encoding: .utf8)
        let kubeconfig = api.kubeconfig
        try kubeconfig.write(to: directory.appendingPathComponent("kubeconfig"), atomically: true, encoding: .utf8)
        let port = try freePort()
        let process = try ProxyBinary.start(
            [
                "--oidc-issuer-url=\(issuer.url)", "--oidc-client-id=kubernetes",
                "--oidc-username-claim=email", "--oidc-groups-claim=groups",
                "--oidc-ca-file", directory.appendingPathComponent("issuer-ca.crt").path,
                "--kubeconfig", directory.appendingPathComponent("kubeconfig").path,
                "--listen-addr=127.0.0.1:\(port)",
                // Not the default :9090, which another process on this machine may hold.
                "--metrics-addr=127.0.0.1:0",
            ], log: directory.appendingPathComponent("proxy.log"))
        defer { if process.isRunning { process.terminate() } }

        var ready = false
        for _ in 0..<200 where !ready {
            try await Task.sleep(for: .milliseconds(50))
            let response = try? await RawHTTPClient.send(
                "GET /readyz HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n", port: port, timeout: .seconds(2))
            ready = response?.status == 200
        }
        let log = { (try? String(contentsOf: directory.appendingPathComponent("proxy.log"), encoding: .utf8)) ?? "" }
        try #require(ready, "the proxy never became ready:\n\(log())")

        let token = try issuer.mint()
        let response = try await RawHTTPClient.send(
            "GET /api/v1/namespaces HTTP/1.1\r\nHost: p\r\nAuthorization: Bearer \(token)\r\nConnection: close\r\n\r\n",
            port: port)
        #expect(response.status == 200)
        #expect(api.requests.first?.values("Impersonate-User") == ["alice@example.com"])

        process.terminate()  // SIGTERM
        for _ in 0..<100 where process.isRunning { try await Task.sleep(for: .milliseconds(50)) }
        #expect(!process.isRunning)
        #expect(process.terminationStatus == 0)
        #expect(!log().contains(token), "the token must never be logged")
        await api.stop()
        await issuer.stop()
    }
}

@Suite("Graceful shutdown, through the real binary")
struct GracefulShutdownTests {
    @Test("SIGTERM: new connections are refused, the request in flight completes, then exit 0")
    func drainOnSigterm() async throws {
        try await KubectlBench.with { bench in
            let (slow, output) = try bench.startStreaming(["get", "--raw", "/testbed/delay?ms=4000"])
            // Wait until the slow request has reached the API server.
            for _ in 0..<200 where !bench.api.requests.contains(where: { $0.path == "/testbed/delay" }) {
                try await Task.sleep(for: .milliseconds(20))
            }
            bench.proxy.terminate()  // SIGTERM
            try await Task.sleep(for: .milliseconds(300))
            #expect(bench.proxy.isRunning, "the proxy must wait for the request in flight:\n\(bench.log)")
            let refused = try await bench.kubectl(["get", "--raw", "/version"])
            #expect(refused.status != 0, "a new connection must be refused while draining")
            slow.waitUntilExit()
            #expect(slow.terminationStatus == 0)
            #expect(output.text.contains(#""delayed":true"#))
            for _ in 0..<100 where bench.proxy.isRunning { try await Task.sleep(for: .milliseconds(50)) }
            #expect(!bench.proxy.isRunning, "the proxy must exit once drained:\n\(bench.log)")
            #expect(bench.proxy.terminationStatus == 0)
            #expect(bench.log.contains("every connection drained"))
        }
    }

    @Test("SIGTERM with a watch open: the proxy exits 0 once the grace period is over")
    func exitsAfterGracePeriod() async throws {
        try await KubectlBench.with(proxyArguments: ["--shutdown-grace-period=1s"]) { bench in
            let (watch, output) = try bench.startStreaming(["get", "namespaces", "--watch", "--output=name"])
            defer { if watch.isRunning { watch.terminate() } }
            #expect(try await output.wait { $0.contains("namespace/default") }, "got: \(output.text)")
            // That line came from the list; the watch is the next request: wait until it is held.
            for _ in 0..<200 where bench.api.openHeldStreams == 0 { try await Task.sleep(for: .milliseconds(20)) }
            #expect(bench.api.openHeldStreams == 1)
            let started = ContinuousClock.now
            bench.proxy.terminate()  // SIGTERM
            // The watch never ends by itself: only the grace period can end the drain.
            for _ in 0..<200 where bench.proxy.isRunning { try await Task.sleep(for: .milliseconds(50)) }
            try #require(!bench.proxy.isRunning, "the proxy waited past its grace period for the watch:\n\(bench.log)")
            #expect(bench.proxy.terminationStatus == 0)
            #expect(ContinuousClock.now - started >= .seconds(1), "the watch gets its grace period")
            #expect(bench.log.contains("drain deadline reached"))
            // The watch the deadline cut has its access-log line, its duration the whole wait.
            let watchLines = bench.log.split(separator: "\n").filter { line in
                guard line.contains(" request "), line.contains("path=/api/v1/namespaces"),
                    let field = line.split(separator: " ").first(where: { $0.hasPrefix("duration_ms=") }),
                    let milliseconds = Double(field.dropFirst("duration_ms=".count))
                else { return false }
                return milliseconds >= 1000
            }
            #expect(watchLines.count == 1, "no access-log line for the watch:\n\(bench.log)")
        }
    }
}

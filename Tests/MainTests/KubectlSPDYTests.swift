import Foundation
import Testbed
import Testing

/// What users of kubectl 1.20 (SPDY/3.1 exec and port-forward) and of current kubectl
/// (port-forward's SPDY tunnelled through a WebSocket) see through the real binary serving
/// HTTPS, and what the stand-in API server received from the proxy.
@Suite("kubectl over SPDY: 1.20 exec and port-forward, and 1.33 port-forward")
struct KubectlSPDYTests {
    @Test("kubectl 1.20 exec runs a command over SPDY and returns its output and exit code")
    func execOverSPDY() async throws {
        try await KubectlBench.with(kubectl: .v120) { bench in
            let outcome = try await bench.kubectl(["exec", "web", "--", "echo", "hello", "world"])
            #expect(outcome.status == 0, "\(outcome.standardError)\n\(bench.log)")
            #expect(outcome.standardOutput == "hello world\n")
            let exec = try #require(bench.api.requests.first { $0.path.hasSuffix("/exec") })
            #expect(exec.method == "POST")
            #expect(exec.values("Upgrade") == ["SPDY/3.1"])
            #expect(exec.values("X-Stream-Protocol-Version").contains("v4.channel.k8s.io"))
            expectImpersonated(exec, bench)
            let session = try #require(bench.api.sessions.first)
            #expect(session.command == ["echo", "hello", "world"])
            #expect(session.transport == "SPDY/3.1 v4.channel.k8s.io")

            let failing = try await bench.kubectl(["exec", "web", "--", "no-such-command"])
            #expect(failing.status == 127, "\(failing.standardError)")
            #expect(failing.standardError.contains("no-such-command: command not found"))
        }
    }

    @Test("kubectl 1.20 exec -i round-trips stdin through cat over SPDY")
    func execStdinOverSPDY() async throws {
        try await KubectlBench.with(kubectl: .v120) { bench in
            let text = String(repeating: "round trip through SPDY streams\n", count: 2000)
            let outcome = try await bench.kubectl(["exec", "-i", "web", "--", "cat"], input: Data(text.utf8))
            #expect(outcome.status == 0, "\(outcome.standardError)")
            #expect(outcome.standardOutput == text)
            let session = try #require(bench.api.sessions.first { $0.command == ["cat"] })
            #expect(String(decoding: session.stdin, as: UTF8.self) == text)
            #expect(session.transport == "SPDY/3.1 v4.channel.k8s.io")
        }
    }

    @Test("kubectl 1.20 with an invalid token: exec and port-forward fail with Unauthorized, nothing upstream")
    func invalidTokenOld() async throws {
        try await KubectlBench.with(kubectl: .v120) { bench in
            try await expectUnauthorized(bench)
        }
    }

    @Test("kubectl 1.20 port-forward carries several connections to the pod's port and back over SPDY")
    func portForwardOverSPDY() async throws {
        try await KubectlBench.with(kubectl: .v120) { bench in
            try await expectForwarding(bench, transport: "SPDY/3.1")
            let upgrades = bench.api.requests.filter { $0.path.hasSuffix("/portforward") }
            #expect(upgrades.count == 1)
            let upgrade = try #require(upgrades.first)
            #expect(upgrade.method == "POST")
            #expect(upgrade.values("Upgrade") == ["SPDY/3.1"])
            #expect(upgrade.values("X-Stream-Protocol-Version") == ["portforward.k8s.io"])
            expectImpersonated(upgrade, bench)
        }
    }

    @Test("kubectl 1.33 port-forward tunnels SPDY through a WebSocket, several connections")
    func portForwardTunnelled() async throws {
        try await KubectlBench.with { bench in
            try await expectForwarding(bench, transport: "SPDY/3.1+portforward.k8s.io")
            // The WebSocket was accepted, so kubectl never fell back to a plain SPDY upgrade.
            let upgrades = bench.api.requests.filter { $0.path.hasSuffix("/portforward") }
            #expect(upgrades.count == 1)
            let upgrade = try #require(upgrades.first)
            #expect(upgrade.method == "GET")
            #expect(upgrade.values("Upgrade").map { $0.lowercased() } == ["websocket"])
            #expect(upgrade.values("Sec-WebSocket-Protocol").contains { $0.contains("SPDY/3.1+portforward.k8s.io") })
            expectImpersonated(upgrade, bench)
        }
    }

    @Test("kubectl 1.33 port-forward falls back to a plain SPDY upgrade when the WebSocket is refused")
    func portForwardFallback() async throws {
        try await KubectlBench.with { bench in
            bench.api.setRefusesWebSocketPortForward(true)
            try await expectForwarding(bench, transport: "SPDY/3.1")
            let upgrades = bench.api.requests.filter { $0.path.hasSuffix("/portforward") }
            #expect(upgrades.map(\.method) == ["GET", "POST"])
            #expect(upgrades.first?.values("Upgrade").map { $0.lowercased() } == ["websocket"])
            let spdy = try #require(upgrades.last)
            #expect(spdy.values("Upgrade") == ["SPDY/3.1"])
            #expect(spdy.values("X-Stream-Protocol-Version") == ["portforward.k8s.io"])
            expectImpersonated(spdy, bench)
        }
    }

    @Test("kubectl 1.33 port-forward with an invalid token fails with Unauthorized, nothing upstream")
    func invalidTokenCurrent() async throws {
        try await KubectlBench.with { bench in
            try await expectUnauthorized(bench, exec: false)
        }
    }

    /// The proxy's own credential upstream, never the client's token, and the user's identity.
    private func expectImpersonated(_ request: ReceivedRequest, _ bench: KubectlBench) {
        #expect(request.values("Authorization") == ["Bearer \(bench.api.expectedToken)"])
        #expect(request.values("Impersonate-User") == ["alice@example.com"])
        #expect(request.values("Impersonate-Group") == ["developers"])
    }

    /// A forged token: each command ends on its own, non-zero, saying Unauthorized.
    private func expectUnauthorized(_ bench: KubectlBench, exec: Bool = true) async throws {
        let forged = try TokenMinter.mint(claims: bench.issuer.claims(), key: try .rsa(kid: "rsa-1", slot: 1))
        var commands = [["port-forward", "pod/web", ":8080"]]
        if exec { commands.append(["exec", "web", "--", "echo", "hi"]) }
        for command in commands {
            let started = ContinuousClock.now
            let outcome = try await bench.kubectl(command, token: forged, timeout: .seconds(30))
            #expect(outcome.status == 1, "\(bench.release.name) \(command[0]): \(outcome)")
            #expect(outcome.standardError.contains("You must be logged in to the server"), "\(outcome.standardError)")
            #expect(ContinuousClock.now - started < .seconds(20), "\(command[0]) took too long to fail")
        }
        #expect(bench.api.requests.isEmpty)
        #expect(bench.api.forwards.isEmpty)
    }

    /// Runs `kubectl port-forward` to a TCP echo server standing in for the pod's port, then
    /// sends bytes over several connections (two at once, one after) and checks each echo.
    private func expectForwarding(_ bench: KubectlBench, transport: String) async throws {
        let echo = try await TCPEchoServer.start()
        let process = bench.kubectlProcess(["port-forward", "pod/web", ":\(echo.port)"])
        let output = Pipe()
        let errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        let printed = StreamingOutput(output)
        let complaints = StreamingOutput(errors)
        try process.run()
        defer {
            if process.isRunning { process.terminate() }
        }
        let forwarding = try await printed.wait { $0.contains(" -> \(echo.port)") }
        #expect(forwarding, "port-forward never listened: \(printed.text)\(complaints.text)\n\(bench.log)")
        let localPort = try #require(Self.localPort(in: printed.text, remote: echo.port), "\(printed.text)")

        let first = try await RawConnection.connect(port: localPort)
        let second = try await RawConnection.connect(port: localPort)
        try await roundTrip(first, "first connection", size: 100_000)
        try await roundTrip(second, "second connection", size: 10)
        for connection in [first, second] {
            try await connection.shutdownOutput()
            #expect(try await connection.wait { $0.peerFinished }, "the pod side's close never came back")
            await connection.close()
        }
        let third = try await RawConnection.connect(port: localPort)
        try await roundTrip(third, "third connection", size: 1000)
        await third.close()

        #expect(process.isRunning, "port-forward ended early: \(complaints.text)")
        #expect(echo.connections == 3)
        let forwards = bench.api.forwards
        #expect(forwards.count == 3)
        #expect(forwards.allSatisfy { $0.port == echo.port && $0.transport == transport }, "\(forwards)")
        #expect(Set(forwards.map(\.requestID)).count == 3)
        #expect(!complaints.text.contains("error"), "\(complaints.text)")
        await echo.stop()
    }

    private func roundTrip(_ connection: RawConnection, _ label: String, size: Int) async throws {
        let payload = "\(label): " + String(repeating: "0123456789", count: size / 10) + "\n"
        let before = connection.text
        try await connection.send(payload)
        let echoed = try await connection.wait(timeout: .seconds(20)) { $0.text == before + payload }
        #expect(echoed, "\(label): got \(connection.byteCount - before.utf8.count) of \(payload.utf8.count) bytes")
    }

    /// The local port in kubectl's `Forwarding from 127.0.0.1:PORT -> REMOTE`.
    private static func localPort(in output: String, remote: Int) -> Int? {
        let line = output.split(separator: "\n").first {
            $0.hasPrefix("Forwarding from 127.0.0.1:") && $0.hasSuffix("-> \(remote)")
        }
        return line?.dropFirst("Forwarding from 127.0.0.1:".count).split(separator: " ").first.flatMap { Int($0) }
    }
}

import Foundation
import Testbed
import Testing

@Suite("Metrics listener and log format, through the real binary")
struct ObservabilityBinaryTests {
    @Test("--metrics-addr serves /metrics and /readyz; --log-format json writes one JSON object per line")
    func metricsAndJSONLogs() async throws {
        let issuer = try await StandInIssuer()
        let api = try await StandInAPIServer()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("kip-obs-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        try issuer.certificateAuthority.certificatePEM.write(
            to: directory.appendingPathComponent("issuer-ca.crt"), atomically: true, encoding: .utf8)
        let kubeconfig = api.kubeconfig
        try kubeconfig.write(to: directory.appendingPathComponent("kubeconfig"), atomically: true, encoding: .utf8)
        let port = try freePort()
        let metricsPort = try freePort()
        let logURL = directory.appendingPathComponent("proxy.log")
        let process = try ProxyBinary.start(
            [
                "--oidc-issuer-url=\(issuer.url)", "--oidc-client-id=kubernetes",
                "--oidc-ca-file", directory.appendingPathComponent("issuer-ca.crt").path,
                "--kubeconfig", directory.appendingPathComponent("kubeconfig").path,
                "--listen-addr=127.0.0.1:\(port)", "--metrics-addr=127.0.0.1:\(metricsPort)", "--log-format=json",
            ], log: logURL)
        defer { if process.isRunning { process.terminate() } }
        let log = { (try? String(contentsOf: logURL, encoding: .utf8)) ?? "" }

        func get(_ path: String, port: Int, token: String? = nil) async throws -> RawHTTPClient.Response {
            let authorization = token.map { "Authorization: Bearer \($0)\r\n" } ?? ""
            return try await RawHTTPClient.send(
                "GET \(path) HTTP/1.1\r\nHost: p\r\n\(authorization)Connection: close\r\n\r\n", port: port,
                timeout: .seconds(5))
        }

        var ready = false
        for _ in 0..<200 where !ready {
            try await Task.sleep(for: .milliseconds(50))
            ready = (try? await get("/readyz", port: metricsPort))?.status == 200
        }
        try #require(ready, "the metrics listener never answered /readyz ok:\n\(log())")
        let verbose = try await get("/readyz?verbose", port: metricsPort)
        #expect(verbose.body.hasPrefix("[+]ping ok\n[+]config ok\n[+]issuer-"))
        #expect(verbose.body.hasSuffix("readyz check passed\n"))

        let token = try issuer.mint()
        #expect(try await get("/api/v1/namespaces", port: port, token: token).status == 200)
        #expect(try await get("/api/v1/namespaces", port: port).status == 401)
        let metrics = try await get("/metrics", port: metricsPort)
        #expect(metrics.status == 200)
        #expect(metrics.body.contains(#"kube_impersonate_proxy_requests_total{code="200",method="GET"} 1"#))
        #expect(metrics.body.contains(#"kube_impersonate_proxy_requests_total{code="401",method="GET"} 1"#))
        #expect(metrics.body.contains(#"kube_impersonate_proxy_config_info{sha256="none"} 1"#))
        // The proxy listener does not serve /metrics: it is proxied like any other path.
        #expect(try await get("/metrics", port: port).status == 401)

        process.terminate()
        for _ in 0..<100 where process.isRunning { try await Task.sleep(for: .milliseconds(50)) }
        #expect(process.terminationStatus == 0)

        let lines = log().split(separator: "\n")
        #expect(!lines.isEmpty)
        var objects: [[String: Any]] = []
        for line in lines {
            let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            let parsed = try #require(object, "not a JSON object: \(line)")
            #expect(parsed["time"] is String && parsed["level"] is String && parsed["message"] is String)
            objects.append(parsed)
        }
        let access = objects.filter { $0["message"] as? String == "request" }
        #expect(access.count == 3)
        let success = try #require(access.first { $0["status"] as? String == "200" })
        #expect(success["user"] as? String == "alice@example.com")
        #expect(success["path"] as? String == "/api/v1/namespaces")
        let startup = try #require(objects.first { $0["message"] as? String == "effective configuration" })
        #expect((startup["configuration"] as? String)?.contains("readiness: all") == true)
        #expect(!log().contains(token), "the token must never be logged")
        #expect(!log().contains(api.expectedToken), "the upstream credential must never be logged")
        await api.stop()
        await issuer.stop()
    }
}

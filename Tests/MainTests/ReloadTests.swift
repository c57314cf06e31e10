import Foundation
import NIOCore
import Testbed
import Testing

/// SPEC §4 "Reload", end to end through the real binary.
@Suite("Config reload through the real binary", .serialized)
struct ReloadTests {
    @Test("SIGHUP with a changed groups prefix takes effect on the next request")
    func hangUpAppliesNewPrefix() async throws {
        try await RunningProxy.run(groupsPrefix: "v1:") { proxy in
            #expect(try await proxy.get().groups == ["v1:developers"])

            try proxy.writeConfig(RunningProxy.configYAML(issuer: proxy.issuer, groupsPrefix: "v2:"))
            proxy.hangUp()
            try await proxy.waitForLog(["configuration reloaded", "trigger=SIGHUP"])
            let after = try await proxy.get()
            #expect(after.status == 200)
            #expect(after.groups == ["v2:developers"])
            #expect(proxy.log.contains("keptKeys=standin"), "the unchanged issuer keeps its keys")
            #expect(proxy.issuer.discoveryFetches == 1, "no refetch for an issuer whose URL and CA did not change")
        }
    }

    @Test("an invalid file (bad YAML, an http:// issuer) is refused and the old configuration keeps serving")
    func invalidFileKeepsRunningConfiguration() async throws {
        try await RunningProxy.run(groupsPrefix: "v1:") { proxy in
            try proxy.writeConfig("jwt:\n  - issuer: {url: \"https://x\"\n")
            proxy.hangUp()
            try await proxy.waitForLog(["configuration reload refused"])
            try await proxy.waitForLog(["configuration problem", "not valid YAML"])
            var response = try await proxy.get()
            #expect(response.status == 200)
            #expect(response.groups == ["v1:developers"])

            try proxy.writeConfig(
                RunningProxy.configYAML(issuer: proxy.issuer, groupsPrefix: "v2:", url: "http://127.0.0.1:1"))
            proxy.hangUp()
            try await proxy.waitForLog(["configuration reload refused"], count: 2)
            try await proxy.waitForLog(["configuration problem", "jwt[0].issuer.url", "URL scheme must be https"])
            response = try await proxy.get()
            #expect(response.status == 200)
            #expect(response.groups == ["v1:developers"])
            #expect(proxy.logLines(containing: ["configuration reloaded"]) == 0)
        }
    }

    @Test("a client certificate renewed in the kubeconfig's files is presented to the API server without a restart")
    func renewedUpstreamClientCertificate() async throws {
        let authority = try TestCertificateAuthority(commonName: "cluster client CA")
        let first = RunningProxy.UpstreamClientCertificate(
            authority: authority, identity: try authority.issueServerCertificate(commonName: "proxy-first"))
        try await RunningProxy.run(upstreamClientCertificate: first) { proxy in
            // Several requests, so that every event loop's pool is likely to hold an idle
            // connection made with the first certificate.
            for _ in 0..<6 { #expect(try await proxy.get().status == 200) }
            let before = proxy.api.requests
            #expect(before.allSatisfy { $0.clientCertificateSubject == "CN=proxy-first" })
            #expect(before.allSatisfy { $0.values("Authorization").isEmpty })

            let renewed = try authority.issueServerCertificate(commonName: "proxy-renewed")
            try renewed.certificatePEM.write(
                to: proxy.directory.appendingPathComponent("client.crt"), atomically: true, encoding: .utf8)
            try renewed.privateKeyPEM.write(
                to: proxy.directory.appendingPathComponent("client.key"), atomically: true, encoding: .utf8)
            try await proxy.waitForLog(["presenting the renewed upstream client certificate on new connections"])
            proxy.api.resetRequests()
            for _ in 0..<6 { #expect(try await proxy.get().status == 200) }
            let after = proxy.api.requests
            #expect(after.allSatisfy { $0.clientCertificateSubject == "CN=proxy-renewed" })
            let reused = Set(before.map(\.connection)).intersection(after.map(\.connection))
            #expect(reused.isEmpty, "connections made with the first certificate are not reused")
        }
    }

    @Test("flags only: SIGHUP re-applies the flags and the proxy keeps serving")
    func hangUpInFlagsOnlyMode() async throws {
        try await RunningProxy.run(groupsPrefix: "seed:", flagsOnly: true) { proxy in
            proxy.hangUp()
            try await proxy.waitForLog(["configuration reloaded", "trigger=SIGHUP", "keptKeys="])
            #expect(proxy.process.isRunning)
            #expect(try await proxy.get().groups == ["seed:developers"])
            #expect(proxy.logLines(containing: ["trigger=\"file content changed\""]) == 0)
        }
    }

    @Test("a change that needs a restart is logged and not applied; the rest of the file is")
    func restartNeedingChangeIsLoggedNotApplied() async throws {
        try await RunningProxy.run(groupsPrefix: "v1:") { proxy in
            try proxy.writeConfig(
                RunningProxy.configYAML(issuer: proxy.issuer, groupsPrefix: "v2:", metricsAddress: "127.0.0.1:9999"))
            proxy.hangUp()
            try await proxy.waitForLog(["configuration reloaded", "trigger=SIGHUP"])
            #expect(
                proxy.logLines(containing: [
                    "needs a restart", "setting=metricsAddr", "running=127.0.0.1:0", "wanted=127.0.0.1:9999",
                ]) >= 1, "\(proxy.log)")
            #expect(try await proxy.get().groups == ["v2:developers"])
        }
    }

    @Test("a ConfigMap-style ..data symlink swap is picked up without a signal")
    func configMapSymlinkSwap() async throws {
        // The layout of a mounted ConfigMap: config.yaml -> ..data/config.yaml, ..data -> a timestamped directory.
        let configMapLayout: (URL, String) throws -> String = { directory, yaml in
            let mount = directory.appendingPathComponent("mount")
            let first = mount.appendingPathComponent("..2026_11_29_10_00_00.000000001")
            try FileManager.default.createDirectory(at: first, withIntermediateDirectories: true)
            try yaml.write(to: first.appendingPathComponent("config.yaml"), atomically: true, encoding: .utf8)
            try FileManager.default.createSymbolicLink(
                atPath: mount.appendingPathComponent("..data").path, withDestinationPath: first.lastPathComponent)
            try FileManager.default.createSymbolicLink(
                atPath: mount.appendingPathComponent("config.yaml").path, withDestinationPath: "..data/config.yaml")
            return mount.appendingPathComponent("config.yaml").path
        }
        try await RunningProxy.run(configAt: configMapLayout) { proxy in
            #expect(try await proxy.get().groups == ["v1:developers"])

            // What the kubelet does: a new timestamped directory, a temporary link to it, renamed over ..data.
            let mount = proxy.directory.appendingPathComponent("mount")
            let second = mount.appendingPathComponent("..2026_11_29_10_05_00.000000002")
            try FileManager.default.createDirectory(at: second, withIntermediateDirectories: true)
            try RunningProxy.configYAML(issuer: proxy.issuer, groupsPrefix: "swapped:").write(
                to: second.appendingPathComponent("config.yaml"), atomically: true, encoding: .utf8)
            try FileManager.default.createSymbolicLink(
                atPath: mount.appendingPathComponent("..data_tmp").path, withDestinationPath: second.lastPathComponent)
            #expect(
                rename(mount.appendingPathComponent("..data_tmp").path, mount.appendingPathComponent("..data").path)
                    == 0)

            try await proxy.waitForLog(
                ["configuration reloaded", "trigger=\"file content changed\""], timeout: .seconds(10))
            #expect(try await proxy.get().groups == ["swapped:developers"])
            #expect(proxy.logLines(containing: ["trigger=SIGHUP"]) == 0)
        }
    }

    @Test("SIGHUP every 100 ms while clients send 2000 requests: every request succeeds")
    func hangUpsUnderLoad() async throws {
        try await RunningProxy.run { proxy in
            let token = try proxy.issuer.mint()
            let port = proxy.port
            let pid = proxy.process.processIdentifier
            let signals = Task {
                while !Task.isCancelled {
                    kill(pid, SIGHUP)
                    try? await Task.sleep(for: .milliseconds(100))
                }
            }
            let statuses = try await withThrowingTaskGroup(of: [Int?].self) { group in
                for _ in 0..<4 {
                    group.addTask {
                        var statuses: [Int?] = []
                        for _ in 0..<500 {
                            let response = try await RawHTTPClient.send(
                                "GET /api/v1/namespaces HTTP/1.1\r\nHost: p\r\nAuthorization: Bearer \(token)\r\nConnection: close\r\n\r\n",
                                port: port)
                            statuses.append(response.status)
                        }
                        return statuses
                    }
                }
                return try await group.reduce(into: []) { $0 += $1 }
            }
            signals.cancel()
            #expect(statuses.count == 2000)
            #expect(statuses.allSatisfy { $0 == 200 }, "\(statuses.filter { $0 != 200 }.count) requests failed")
            let reloads = proxy.logLines(containing: ["configuration reloaded", "trigger=SIGHUP"])
            #expect(reloads >= 2, "only \(reloads) reloads happened during the run")
            #expect(proxy.issuer.discoveryFetches == 1)
            #expect(proxy.process.isRunning)
        }
    }

    @Test("a watch opened before a reload keeps streaming after it")
    func watchSurvivesReload() async throws {
        try await RunningProxy.run(groupsPrefix: "v1:") { proxy in
            let token = try proxy.issuer.mint()
            let port = proxy.port
            let watch = Task {
                try await RawHTTPClient.send(
                    "GET /api/v1/namespaces?watch=true HTTP/1.1\r\nHost: p\r\nAuthorization: Bearer \(token)\r\nConnection: close\r\n\r\n",
                    port: port, timeout: .seconds(30))
            }
            // The stand-in holds the watch after its first event.
            for _ in 0..<200 where !proxy.api.requests.contains(where: { $0.uri.contains("watch=true") }) {
                try await Task.sleep(for: .milliseconds(20))
            }
            try proxy.writeConfig(RunningProxy.configYAML(issuer: proxy.issuer, groupsPrefix: "v2:"))
            proxy.hangUp()
            try await proxy.waitForLog(["configuration reloaded", "trigger=SIGHUP"])
            #expect(try await proxy.get().groups == ["v2:developers"])

            proxy.api.releaseWatches()
            let response = try await watch.value
            #expect(response.status == 200)
            #expect(response.body.contains("\"type\":\"ADDED\""))
            #expect(response.body.contains("\"type\":\"MODIFIED\""))
            #expect(response.closedByServer)
        }
    }
}

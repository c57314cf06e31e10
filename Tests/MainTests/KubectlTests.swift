import Foundation
import Testbed
import Testing

/// What a kubectl user does, through the real binary serving HTTPS, with a real kubectl.
@Suite("kubectl through the proxy")
struct KubectlTests {
    @Test("kubectl get lists namespaces as the impersonated user")
    func get() async throws {
        try await KubectlBench.with { bench in
            let outcome = try await bench.kubectl(["get", "namespaces"])
            #expect(outcome.status == 0, "\(outcome.standardError)")
            #expect(outcome.standardOutput.contains("team-a"))
            let listed = bench.api.requests.filter { $0.path == "/api/v1/namespaces" }
            #expect(!listed.isEmpty)
            #expect(listed.allSatisfy { $0.values("Impersonate-User") == ["alice@example.com"] })
            #expect(listed.allSatisfy { $0.values("Impersonate-Group") == ["developers"] })
        }
    }

    @Test("a token of more than 16 KiB (300 groups) works from kubectl's first request, over HTTP/2")
    func largeToken() async throws {
        try await KubectlBench.with { bench in
            let groups = (0..<300).map { "team-\($0)-" + String(repeating: "g", count: 50) }
            let token = try bench.issuer.mint(bench.issuer.claims(groups: groups))
            #expect(token.utf8.count > 20_000, "\(token.utf8.count) bytes")
            let outcome = try await bench.kubectl(["get", "namespaces"], token: token)
            #expect(outcome.status == 0, "\(outcome.standardError)")
            let listed = try #require(bench.api.requests.first { $0.path == "/api/v1/namespaces" })
            #expect(listed.values("Impersonate-Group") == groups)
        }
    }

    @Test("an invalid token fails cleanly with Unauthorized, for get and exec")
    func invalidToken() async throws {
        try await KubectlBench.with { bench in
            let forged = try TokenMinter.mint(claims: bench.issuer.claims(), key: try .rsa(kid: "rsa-1", slot: 1))
            let get = try await bench.kubectl(["get", "namespaces"], token: forged)
            #expect(get.status == 1)
            #expect(get.standardError.contains("You must be logged in to the server"), "\(get.standardError)")
            let exec = try await bench.kubectl(["exec", "web", "--", "echo", "hi"], token: forged)
            #expect(exec.status == 1)
            #expect(exec.standardError.contains("You must be logged in to the server"), "\(exec.standardError)")
            #expect(bench.api.requests.isEmpty)
        }
    }

    @Test("kubectl get -w shows events while the watch stays open")
    func watch() async throws {
        try await KubectlBench.with { bench in
            let (process, output) = try bench.startStreaming([
                "get", "namespaces", "--watch-only", "--output-watch-events",
            ])
            defer { if process.isRunning { process.terminate() } }
            #expect(try await output.wait { $0.contains("ADDED") }, "got: \(output.text)")
            #expect(process.isRunning, "the watch must still be open")
            // The API server offers HTTP/2: the watch reached it as a stream.
            let watch = bench.api.requests.first { $0.uri.contains("watch=true") }
            #expect(watch?.httpMajorVersion == 2, "\(bench.api.requests.map { ($0.uri, $0.httpMajorVersion) })")
            bench.api.releaseWatches()
            #expect(try await output.wait { $0.contains("MODIFIED") }, "got: \(output.text)")
        }
    }

    @Test("kubectl logs -f streams lines as they come")
    func logsFollow() async throws {
        try await KubectlBench.with { bench in
            let (process, output) = try bench.startStreaming(["logs", "-f", "web"])
            defer { if process.isRunning { process.terminate() } }
            #expect(try await output.wait { $0.contains("log line 1 from web") })
            #expect(process.isRunning)
            let follow = bench.api.requests.first { $0.uri.contains("follow=true") }
            #expect(follow?.httpMajorVersion == 2, "\(bench.api.requests.map { ($0.uri, $0.httpMajorVersion) })")
            bench.api.releaseWatches()
            #expect(try await output.wait { $0.contains("log line 2 from web") })
        }
    }

    @Test("kubectl exec runs a command and returns its output and exit code")
    func exec() async throws {
        try await KubectlBench.with { bench in
            let outcome = try await bench.kubectl(["exec", "web", "--", "echo", "hello", "world"])
            #expect(outcome.status == 0, "\(outcome.standardError)\n\(bench.log)")
            #expect(outcome.standardOutput == "hello world\n")
            let execRequest = try #require(bench.api.requests.first { $0.path.hasSuffix("/exec") })
            #expect(execRequest.values("Impersonate-User") == ["alice@example.com"])
            #expect(execRequest.values("Authorization") == ["Bearer \(bench.api.expectedToken)"])

            let failing = try await bench.kubectl(["exec", "web", "--", "no-such-command"])
            #expect(failing.status == 127)
            #expect(failing.standardError.contains("no-such-command: command not found"))
        }
    }

    @Test("kubectl exec -i round-trips stdin through cat")
    func execStdin() async throws {
        try await KubectlBench.with { bench in
            let text = String(repeating: "round trip through the splice\n", count: 2000)
            let outcome = try await bench.kubectl(["exec", "-i", "web", "--", "cat"], input: Data(text.utf8))
            #expect(outcome.status == 0, "\(outcome.standardError)")
            #expect(outcome.standardOutput == text)
        }
    }

    @Test("kubectl cp copies a file into a pod")
    func copyIntoPod() async throws {
        try await KubectlBench.with { bench in
            let file = bench.directory.appendingPathComponent("notes.txt")
            let content = "copied through kube-impersonate-proxy \(UUID())\n"
            try content.write(to: file, atomically: true, encoding: .utf8)
            let outcome = try await bench.kubectl(["cp", file.path, "web:/tmp/notes.txt"])
            #expect(outcome.status == 0, "\(outcome.standardError)")
            let session = try #require(bench.api.sessions.first { $0.command.first == "tar" })
            #expect(String(decoding: session.stdin, as: UTF8.self).contains(content))
        }
    }
}

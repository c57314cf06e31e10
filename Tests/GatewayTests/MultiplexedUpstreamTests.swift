import NIOHTTP1
import Testbed
import Testing

@testable import Gateway

/// Long-running requests (watches, `logs -f`) go to an API server that offers HTTP/2 as streams
/// of shared connections, as client-go sends them, instead of holding a TLS connection each.
@Suite("Watches as HTTP/2 streams to the API server")
struct MultiplexedUpstreamTests {
    private static var http2: ProxyHarness.Options {
        var options = ProxyHarness.Options()
        options.upstreamHTTP2 = true
        return options
    }

    /// Opens a watch through the proxy and waits until its first event has arrived.
    private static func openWatch(_ harness: ProxyHarness, path: String = "/api/v1/namespaces?watch=true")
        async throws -> RawConnection
    {
        let connection = try await RawConnection.connect(port: harness.port)
        try await connection.send(
            "GET \(path) HTTP/1.1\r\nHost: p\r\nAuthorization: Bearer \(try harness.issuer.mint())\r\n\r\n")
        return connection
    }

    @Test("a watch reaches an HTTP/2 API server as a stream, and its events reach the client chunked")
    func watchAsStream() async throws {
        try await ProxyHarness.run(Self.http2) { harness in
            let watch = try await Self.openWatch(harness)
            #expect(try await watch.wait { $0.text.contains("ADDED") }, "got: \(watch.text)")
            #expect(watch.text.hasPrefix("HTTP/1.1 200 OK\r\n"))
            #expect(watch.text.lowercased().contains("transfer-encoding: chunked\r\n"))
            let request = try #require(harness.api.requests.last)
            #expect(request.httpMajorVersion == 2)
            #expect(request.uri == "/api/v1/namespaces?watch=true")
            #expect(request.values("Impersonate-User") == ["alice@example.com"])
            #expect(request.values("Authorization") == ["Bearer \(harness.api.expectedToken)"])
            harness.api.releaseWatches()
            #expect(try await watch.wait { $0.text.hasSuffix("0\r\n\r\n") }, "got: \(watch.text)")
            #expect(watch.text.contains("MODIFIED"))
            await watch.close()
        }
    }
}

extension MultiplexedUpstreamTests {
    @Test("watches share a connection to the API server per event loop; ordinary requests stay on HTTP/1.1")
    func watchesShareAConnection() async throws {
        try await ProxyHarness.run(Self.http2) { harness in
            // Each event loop has its own connections: one more watch than loops puts two on one.
            let loops = Array(harness.server.group.makeIterator()).count
            let paths =
                ["/api/v1/namespaces/team-a/pods/web/log?follow=true"]
                + Array(repeating: "/api/v1/namespaces?watch=1&resourceVersion=7", count: loops)
            var watches: [RawConnection] = []
            for path in paths {
                let watch = try await Self.openWatch(harness, path: path)
                #expect(try await watch.wait { $0.text.contains("ADDED") || $0.text.contains("log line 1") })
                watches.append(watch)
            }
            let list = try await RawHTTPClient.send(
                "GET /api/v1/namespaces HTTP/1.1\r\nHost: p\r\nAuthorization: Bearer \(try harness.issuer.mint())"
                    + "\r\nConnection: close\r\n\r\n", port: harness.port)
            #expect(list.status == 200)
            let requests = harness.api.requests
            #expect(requests.count == paths.count + 1)
            let streams = requests.filter { $0.httpMajorVersion == 2 }
            #expect(streams.count == paths.count)
            #expect(Set(streams.map(\.connection)).count <= loops, "watches did not share connections")
            #expect(requests.last?.httpMajorVersion == 1, "an ordinary request went as a stream")
            for watch in watches { await watch.close() }
        }
    }

    @Test("closing a watch cancels its stream at once; the connection's other watches go on")
    func closeCancelsOnlyItsStream() async throws {
        try await ProxyHarness.run(Self.http2) { harness in
            let kept = try await Self.openWatch(harness)
            let closed = try await Self.openWatch(harness)
            #expect(try await kept.wait { $0.text.contains("ADDED") })
            #expect(try await closed.wait { $0.text.contains("ADDED") })
            #expect(harness.api.openHeldStreams == 2)
            await closed.close()
            // A stream is reset at once: no TLS close to wait for, unlike an HTTP/1.1 connection.
            for _ in 0..<40 where harness.api.openHeldStreams != 1 { try await Task.sleep(for: .milliseconds(50)) }
            #expect(harness.api.openHeldStreams == 1, "the abandoned watch is still open upstream")
            harness.api.releaseWatches()
            #expect(try await kept.wait { $0.text.contains("MODIFIED") }, "got: \(kept.text)")
            await kept.close()
        }
    }

    @Test("no stream beyond the API server's SETTINGS_MAX_CONCURRENT_STREAMS: more watches open another connection")
    func streamLimitOpensAnotherConnection() async throws {
        var options = Self.http2
        options.upstreamHTTP2MaximumStreams = 2
        try await ProxyHarness.run(options) { harness in
            var watches: [RawConnection] = []
            for index in 0..<5 {
                let watch = try await Self.openWatch(harness)
                // A stream NIO held back for the limit would never answer: every watch must.
                #expect(try await watch.wait { $0.text.contains("ADDED") }, "watch \(index): \(watch.text)")
                watches.append(watch)
            }
            let connections = harness.api.requests.map(\.connection)
            #expect(connections.count == 5)
            #expect(Set(connections).count == 3, "connections: \(connections)")
            #expect(Dictionary(grouping: connections, by: { $0 }).values.allSatisfy { $0.count <= 2 })
            for watch in watches { await watch.close() }
        }
    }

    @Test("an API server without HTTP/2: watches go on HTTP/1.1 connections as before")
    func http1OnlyServer() async throws {
        try await ProxyHarness.run { harness in
            let first = try await Self.openWatch(harness)
            let second = try await Self.openWatch(harness)
            #expect(try await first.wait { $0.text.contains("ADDED") })
            #expect(try await second.wait { $0.text.contains("ADDED") })
            let requests = harness.api.requests
            #expect(requests.map(\.httpMajorVersion) == [1, 1])
            #expect(Set(requests.map(\.connection)).count == 2)
            harness.api.releaseWatches()
            #expect(try await first.wait { $0.text.contains("MODIFIED") })
            await first.close()
            await second.close()
        }
    }

    @Test(
        "long-running requests, as kube-apiserver counts watches and followed logs",
        arguments: [
            ("GET", "/api/v1/namespaces?watch=true", true),
            ("GET", "/api/v1/namespaces?watch=1", true),
            ("GET", "/api/v1/namespaces?watch", true),
            ("GET", "/api/v1/namespaces?watch=yes", true),
            ("GET", "/api/v1/namespaces?labelSelector=a&watch=True", true),
            ("GET", "/api/v1/namespaces?watch=", true),
            ("GET", "/api/v1/namespaces?watch=false", false),
            ("GET", "/api/v1/namespaces?watch=FALSE", false),
            ("GET", "/api/v1/namespaces?watch=0", false),
            ("GET", "/api/v1/namespaces?watcher=true", false),
            ("GET", "/api/v1/namespaces?fieldSelector=watch%3Dtrue", false),
            ("GET", "/api/v1/watch/namespaces", true),
            ("GET", "/apis/apps/v1/watch/namespaces/a/deployments", true),
            ("GET", "/apis/apps/v1/watchers", false),
            ("GET", "/api/v1/watch", true),
            ("GET", "/apis/apps/v1/watch", true),
            ("GET", "/api", false),
            ("GET", "/apis", false),
            ("GET", "/", false),
            ("GET", "", false),
            ("GET", "/api/v1/namespaces/a/pods/p/log?follow", true),
            ("GET", "/api/v1/namespaces/a/pods/p/log?follow=true", true),
            ("GET", "/api/v1/namespaces/a/pods/p/log?follow=false", false),
            ("GET", "/api/v1/namespaces/a/pods/p/log", false),
            ("GET", "/api/v1/namespaces/a/pods/p?follow=true", false),
            ("GET", "/api/v1/namespaces", false),
            ("POST", "/api/v1/namespaces?watch=true", false),
        ])
    func longRunning(method: String, uri: String, expected: Bool) {
        let head = HTTPRequestHead(version: .http1_1, method: HTTPMethod(rawValue: method), uri: uri)
        #expect(ProxyHandler.isLongRunning(head) == expected)
    }
}

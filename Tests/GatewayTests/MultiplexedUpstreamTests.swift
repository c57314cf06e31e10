import NIOCore
import NIOHTTP1
import NIOPosix
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

    @Test(
        "the API server may send 256 KiB of each stream and 25 MiB of the connection ahead of the proxy's reads, as kube-apiserver allows its clients"
    )
    func flowControlWindows() async throws {
        try await ProxyHarness.run(Self.http2) { harness in
            let watch = try await Self.openWatch(harness)
            #expect(try await watch.wait { $0.text.contains("ADDED") }, "got: \(watch.text)")
            let log = { harness.api.http2FlowControl }
            // The stream window: announced in the first SETTINGS, so every stream starts with it.
            let streamWindows = log().settings.map { settings in
                settings.last { $0.identifier == HTTP2FlowControlLog.initialWindowSize }?.value
            }
            #expect(streamWindows == [UInt32(256 * 1024)])
            // The connection window starts at HTTP/2's 65 535 bytes; the first DATA frame brings
            // it up to the target (the increment also gives back what that frame took).
            let target = MultiplexedUpstream.connectionWindowBytes
            #expect(target == 256 * 1024 * 100)
            #expect(
                try await eventually {
                    log().connectionWindowIncrements.map { (target...target + 65_535).contains(65_535 + $0) } == [true]
                }, "connection window increments: \(log().connectionWindowIncrements)")
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

    /// Opens watches until two of them reached the API server on one connection (each event
    /// loop of the proxy has its own): returns those two and the rest.
    private static func twoSharingWatches(_ harness: ProxyHarness) async throws -> (
        first: RawConnection, second: RawConnection, others: [RawConnection]
    ) {
        let loops = Array(harness.server.group.makeIterator()).count
        var opened: [(watch: RawConnection, connection: Int)] = []
        for _ in 0...loops {
            let before = harness.api.requests.count
            let watch = try await openWatch(harness)
            #expect(try await watch.wait { $0.text.contains("ADDED") }, "got: \(watch.text)")
            let connection = try #require(harness.api.requests.dropFirst(before).first?.connection)
            if let index = opened.firstIndex(where: { $0.connection == connection }) {
                let first = opened.remove(at: index).watch
                return (first, watch, opened.map(\.watch))
            }
            opened.append((watch, connection))
        }
        throw TestbedError("\(loops + 1) watches on \(loops) event loops, and no two shared a connection")
    }

    @Test("closing a watch cancels its stream at once; the connection's other watches go on")
    func closeCancelsOnlyItsStream() async throws {
        try await ProxyHarness.run(Self.http2) { harness in
            let (kept, closed, others) = try await Self.twoSharingWatches(harness)
            let open = harness.api.openHeldStreams
            await closed.close()
            // A stream is reset at once: no TLS close to wait for, unlike an HTTP/1.1 connection.
            for _ in 0..<200 where harness.api.openHeldStreams != open - 1 {
                try await Task.sleep(for: .milliseconds(50))
            }
            #expect(harness.api.openHeldStreams == open - 1, "the abandoned watch is still open upstream")
            harness.api.releaseWatches()
            #expect(try await kept.wait { $0.text.contains("MODIFIED") }, "got: \(kept.text)")
            await kept.close()
            for watch in others { await watch.close() }
        }
    }

    @Test("no stream beyond the API server's SETTINGS_MAX_CONCURRENT_STREAMS, watches opened one by one or at once")
    func streamLimitOpensAnotherConnection() async throws {
        var options = Self.http2
        options.upstreamHTTP2MaximumStreams = 2
        try await ProxyHarness.run(options) { harness in
            // One by one, then a burst of eight at once (most of them arrive while a connection
            // is still being opened, before its SETTINGS have said the limit).
            var watches: [RawConnection] = []
            for index in 0..<3 {
                let watch = try await Self.openWatch(harness)
                // A stream NIO held back for the limit would never answer: every watch must.
                #expect(try await watch.wait { $0.text.contains("ADDED") }, "watch \(index): \(watch.text)")
                watches.append(watch)
            }
            let burst = try await withThrowingTaskGroup(of: RawConnection.self) { group in
                for _ in 0..<8 { group.addTask { try await Self.openWatch(harness) } }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            for (index, watch) in burst.enumerated() {
                #expect(try await watch.wait { $0.text.contains("ADDED") }, "burst \(index): \(watch.text)")
            }
            watches += burst
            let connections = harness.api.requests.map(\.connection)
            #expect(connections.count == 11)
            let streamsPerConnection = Dictionary(grouping: connections, by: { $0 }).values.map(\.count)
            #expect(streamsPerConnection.allSatisfy { $0 <= 2 }, "streams per connection: \(streamsPerConnection)")
            for watch in watches { await watch.close() }
        }
    }

    @Test("an API server that accepts and never answers TLS: watches get 504 in the connect timeout, not a hang")
    func silentServer() async throws {
        let silent = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in channel.eventLoop.makeSucceededVoidFuture() }
            .bind(host: "127.0.0.1", port: 0).get()
        var options = Self.http2
        options.upstreamPort = silent.localAddress?.port
        options.upstreamConnectTimeout = .milliseconds(500)
        try await ProxyHarness.run(options) { harness in
            // Two at once: the second waits for the connection the first is opening.
            let watches = [try await Self.openWatch(harness), try await Self.openWatch(harness)]
            for watch in watches {
                #expect(try await watch.wait(timeout: .seconds(10), until: { $0.text.contains("\r\n\r\n") }))
                #expect(watch.text.hasPrefix("HTTP/1.1 504 "), "got: \(watch.text)")
                await watch.close()
            }
        }
        try await silent.close()
    }

    @Test("the API server's connection drops mid-watch: every watch on it ends, and new ones open another")
    func connectionDrops() async throws {
        try await ProxyHarness.run(Self.http2) { harness in
            let (first, second, others) = try await Self.twoSharingWatches(harness)
            let dropped = try #require(harness.api.requests.last?.connection)
            harness.api.dropHeldStreamConnections()
            // A response cut short can only be told by the connection's end, as kube-apiserver's
            // clients see it when it crashes.
            for watch in [first, second] + others {
                #expect(try await watch.wait { $0.peerFinished }, "got: \(watch.text)")
                #expect(!watch.text.hasSuffix("0\r\n\r\n"), "a cut stream was ended as if complete")
                await watch.close()
            }
            let next = try await Self.openWatch(harness)
            #expect(try await next.wait { $0.text.contains("ADDED") }, "got: \(next.text)")
            #expect(harness.api.requests.last?.connection != dropped)
            await next.close()
        }
    }

    @Test("GOAWAY from the API server: its accepted watches run on, new ones go to another connection")
    func goAway() async throws {
        try await ProxyHarness.run(Self.http2) { harness in
            let (first, second, others) = try await Self.twoSharingWatches(harness)
            let draining = try #require(harness.api.requests.last?.connection)
            harness.api.goAwayOnHeldStreamConnections()
            try await Task.sleep(for: .milliseconds(200))
            // Each new watch lands on some event loop; on the one that had the draining
            // connection it must not go there.
            var newer: [RawConnection] = []
            let loops = Array(harness.server.group.makeIterator()).count
            for _ in 0...loops {
                let before = harness.api.requests.count
                let watch = try await Self.openWatch(harness)
                #expect(try await watch.wait { $0.text.contains("ADDED") }, "got: \(watch.text)")
                #expect(harness.api.requests.dropFirst(before).first?.connection != draining)
                newer.append(watch)
            }
            harness.api.releaseWatches()
            for watch in [first, second] + others + newer {
                #expect(try await watch.wait { $0.text.hasSuffix("0\r\n\r\n") }, "got: \(watch.text)")
                #expect(watch.text.contains("MODIFIED"))
                await watch.close()
            }
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

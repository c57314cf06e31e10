import AsyncHTTPClient
import Foundation
import NIOCore
import NIOPosix
import Testbed
import Testing

@testable import Gateway

@Suite("Forwarding an authenticated request")
struct ProxyForwardingTests {
    @Test("a valid token reaches the API server and its answer comes back unchanged")
    func happyPath() async throws {
        try await ProxyHarness.run { harness in
            let response = try await harness.get("/api/v1/namespaces", token: try harness.issuer.mint())
            #expect(response.status == 200)
            #expect(response.body == StandInAPIServer.namespaceList)
            #expect(response.headers.contains { $0.0.lowercased() == "content-type" && $0.1 == "application/json" })
            #expect(harness.api.requests.count == 1)
        }
    }

    @Test("the API server sees the proxy's credential and the impersonation headers, never the client's token")
    func headersSeenUpstream() async throws {
        try await ProxyHarness.run { harness in
            let token = try harness.issuer.mint(
                harness.issuer.claims(email: "bob@example.com", groups: ["team-a", "oncall"]))
            _ = try await harness.get(
                "/api/v1/namespaces", token: token,
                headers: [("X-Forwarded-For", "6.6.6.6"), ("X-Remote-User", "admin"), ("Accept", "application/json")])
            let request = try #require(harness.api.requests.first)
            #expect(request.values("Authorization") == ["Bearer \(harness.api.expectedToken)"])
            #expect(request.values("Impersonate-User") == ["bob@example.com"])
            #expect(request.values("Impersonate-Group") == ["team-a", "oncall"])
            #expect(request.values("Impersonate-Uid").isEmpty)
            #expect(request.values("X-Forwarded-For") == ["127.0.0.1"])
            #expect(request.values("X-Remote-User").isEmpty)
            #expect(request.values("Accept") == ["application/json"])
            #expect(!request.headers.contains { $0.value.contains(token) })
        }
    }

    @Test(
        "on the default listener (every address, dual-stack) an IPv4 client is 127.0.0.1 upstream and in the access log, not ::ffff:127.0.0.1",
        arguments: [false, true])
    func ipv4ClientOnDualStackListener(overTLS: Bool) async throws {
        var options = overTLS ? ProxyHarness.Options.servingTLS : ProxyHarness.Options()
        options.listenHost = ""
        try await ProxyHarness.run(options) { harness in
            let response = try await harness.get("/api/v1/namespaces", token: try harness.issuer.mint())
            #expect(response.status == 200)
            let request = try #require(harness.api.requests.first)
            #expect(request.values("X-Forwarded-For") == ["127.0.0.1"])
            #expect(harness.logs.accessLines.map { $0.metadata["client"] } == ["127.0.0.1"])
        }
    }

    @Test("a listen host name binds its first IPv4 address, as Go's net.Listen: localhost is 127.0.0.1, not ::1")
    func listenHostName() async throws {
        let loopback6 = try SocketAddress(ipAddress: "::1", port: 8080)
        let loopback4 = try SocketAddress(ipAddress: "127.0.0.1", port: 8080)
        let other6 = try SocketAddress(ipAddress: "2001:db8::1", port: 8080)
        #expect(ServerBootstrap.preferredListeningAddress([loopback6, loopback4]) == loopback4)
        #expect(ServerBootstrap.preferredListeningAddress([other6, loopback6]) == other6)
        #expect(ServerBootstrap.preferredListeningAddress([]) == nil)
        let literal = try ServerBootstrap.resolveForListening("::1", port: 1)
        #expect(literal == (try SocketAddress(ipAddress: "::1", port: 1)))
        var options = ProxyHarness.Options()
        options.listenHost = "localhost"
        try await ProxyHarness.run(options) { harness in
            let response = try await harness.get("/api/v1/namespaces", token: try harness.issuer.mint())
            #expect(response.status == 200)
        }
    }

    @Test(
        "an IPv4-mapped peer is written as IPv4; IPv6 and IPv4 peers as they are",
        arguments: [
            ("::ffff:10.1.2.3", "10.1.2.3"), ("::FFFF:192.0.2.1", "192.0.2.1"), ("::1", "::1"),
            ("2001:db8::1", "2001:db8::1"), ("::ffff:1:2:3", "::ffff:1:2:3"), ("::ffff:0:1", "0.0.0.1"),
            ("10.0.0.1", "10.0.0.1"),
        ])
    func clientIPAddress(peer: String, written: String) throws {
        #expect(try SocketAddress(ipAddress: peer, port: 443).clientIPAddress == written)
    }

    @Test(
        "path and query reach the API server byte for byte",
        arguments: [
            "/api/v1/namespaces/kube-system/pods?labelSelector=app%3Dweb%2Ctier%21%3Dfront&limit=500",
            "/api/v1/namespaces/a%2Fb/configmaps/c%20d",
            "/apis",
            "/apis/",
            "/api/v1/namespaces?fieldSelector=metadata.name%3D%C3%A9t%C3%A9&watch=0",
            "/openapi/v3/apis/apps/v1?hash=ABC%2B%2F%3D",
        ])
    func pathAndQueryVerbatim(target: String) async throws {
        try await ProxyHarness.run { harness in
            let token = try harness.issuer.mint()
            let response = try await RawHTTPClient.send(
                "GET \(target) HTTP/1.1\r\nHost: proxy\r\nAuthorization: Bearer \(token)\r\nConnection: close\r\n\r\n",
                port: harness.port)
            #expect(response.status != nil)
            #expect(harness.api.requests.map(\.uri) == [target])
        }
    }

    @Test("a watch event reaches the client while the stream is still open")
    func watchStreams() async throws {
        try await ProxyHarness.run { harness in
            var request = HTTPClientRequest(url: harness.baseURL + "/api/v1/namespaces?watch=true")
            request.headers.add(name: "Authorization", value: "Bearer \(try harness.issuer.mint())")
            let response = try await harness.client.execute(request, timeout: .seconds(30))
            #expect(response.status.code == 200)
            var iterator = response.body.makeAsyncIterator()
            var received = ""
            while !received.contains("\n") {
                let chunk = try #require(try await iterator.next())
                received += String(buffer: chunk)
            }
            #expect(received.contains(#""type":"ADDED""#))
            // The API server holds the stream open until released: the event came through first.
            harness.api.releaseWatches()
            while let chunk = try await iterator.next() { received += String(buffer: chunk) }
            #expect(received.contains(#""type":"MODIFIED""#))
        }
    }

    @Test("a 5 MB request body and its echo cross the proxy intact")
    func largeBodyRoundTrip() async throws {
        try await ProxyHarness.run { harness in
            var generator = SystemRandomNumberGenerator()
            let payload = (0..<(5 << 20)).map { _ in UInt8.random(in: 0...255, using: &generator) }
            var request = HTTPClientRequest(url: harness.baseURL + "/api/v1/namespaces/default/configmaps")
            request.method = .POST
            request.headers.add(name: "Authorization", value: "Bearer \(try harness.issuer.mint())")
            request.headers.add(name: "Content-Type", value: "application/octet-stream")
            request.body = .bytes(ByteBuffer(bytes: payload))
            let response = try await harness.client.execute(request, timeout: .seconds(60))
            #expect(response.status.code == 200)
            let echoed = try await response.body.collect(upTo: 8 << 20)
            #expect(echoed.readableBytes == payload.count)
            #expect(Array(echoed.readableBytesView) == payload)
            #expect(harness.api.requests.first?.body.count == payload.count)
        }
    }

    @Test("a large response streams through to a client")
    func largeResponse() async throws {
        try await ProxyHarness.run { harness in
            let response = try await harness.get("/testbed/bytes?n=8000000", token: try harness.issuer.mint())
            #expect(response.status == 200)
            #expect(response.body.utf8.count == 8_000_000)
        }
    }

    @Test("requests on one client connection reuse one upstream connection")
    func keepAliveReuse() async throws {
        try await ProxyHarness.run { harness in
            let token = try harness.issuer.mint()
            var raw = ""
            for index in 0..<5 {
                let close = index == 4 ? "Connection: close\r\n" : ""
                raw += "GET /api/v1/namespaces HTTP/1.1\r\nHost: p\r\nAuthorization: Bearer \(token)\r\n\(close)\r\n"
            }
            let response = try await RawHTTPClient.send(raw, port: harness.port)
            #expect(response.text.components(separatedBy: "HTTP/1.1 200 OK").count - 1 == 5)
            #expect(harness.api.requests.count == 5)
            #expect(Set(harness.api.requests.map(\.connection)).count == 1)
        }
    }

    @Test("an API server that closes idle connections does not fail the next request")
    func upstreamClosesIdleConnections() async throws {
        try await ProxyHarness.run { harness in
            harness.api.setCloseAfterEachResponse(true)
            let token = try harness.issuer.mint()
            for _ in 0..<10 {
                let response = try await harness.get("/api/v1/namespaces", token: token)
                #expect(response.status == 200)
            }
            #expect(harness.api.requests.count >= 10)
        }
    }

    @Test("HTTP/1.0 clients get an answer and the connection is closed")
    func http10() async throws {
        try await ProxyHarness.run { harness in
            let token = try harness.issuer.mint()
            let response = try await RawHTTPClient.send(
                "GET /version HTTP/1.0\r\nAuthorization: Bearer \(token)\r\n\r\n", port: harness.port)
            #expect(response.status == 200)
            #expect(response.closedByServer)
            #expect(response.body.contains("v1.33.0-standin"))
        }
    }

    @Test(
        "an HTTP/1.0 client of a streamed answer gets its bytes unchunked, ended by the connection's close",
        arguments: [false, true])
    func http10Streamed(upstreamHTTP2: Bool) async throws {
        var options = ProxyHarness.Options()
        options.upstreamHTTP2 = upstreamHTTP2
        try await ProxyHarness.run(options) { harness in
            let token = try harness.issuer.mint()
            // A followed log goes as an HTTP/2 stream where the server offers it; the plain log
            // comes chunked over HTTP/1.1.
            let path =
                upstreamHTTP2 ? "/api/v1/namespaces/a/pods/web/log?follow=true" : "/api/v1/namespaces/a/pods/web/log"
            let answer = Task {
                try await RawHTTPClient.send(
                    "GET \(path) HTTP/1.0\r\nConnection: keep-alive\r\nAuthorization: Bearer \(token)\r\n\r\n",
                    port: harness.port)
            }
            if upstreamHTTP2 {
                for _ in 0..<100 where harness.api.openHeldStreams == 0 { try await Task.sleep(for: .milliseconds(50)) }
                harness.api.releaseWatches()
            }
            let response = try await answer.value
            #expect(response.status == 200)
            #expect(response.closedByServer)
            #expect(!response.text.lowercased().contains("transfer-encoding"), "\(response.text)")
            #expect(response.body == "log line 1 from web\nlog line 2 from web\n", "\(response.text)")
        }
    }
}

import NIOCore
import NIOHPACK
import NIOHTTP1
import NIOHTTP2
import Testbed
import Testing

@testable import Gateway

/// The API server must read a request body exactly where the proxy read it: a body the API
/// server does not see as one would be read as a second request, on the proxy's own credential
/// and with whatever `Impersonate-*` headers it carries.
@Suite("Request bodies reach the API server framed, whatever the client's framing")
struct RequestFramingTests {
    private static let smuggled =
        "GET /api/v1/secrets HTTP/1.1\r\nHost: kubernetes\r\nImpersonate-User: system:admin\r\n\r\n"

    @Test("a Content-Length the client names in Connection still frames the body it sent")
    func contentLengthNamedInConnection() async throws {
        try await ProxyHarness.run { harness in
            let head =
                "GET /api/v1/namespaces HTTP/1.1\r\nHost: p\r\nAuthorization: Bearer \(try harness.issuer.mint())\r\n"
                + "Connection: close, content-length\r\nContent-Length: \(Self.smuggled.utf8.count)\r\n\r\n"
            let response = try await RawHTTPClient.send(head + Self.smuggled, port: harness.port, timeout: .seconds(5))
            #expect(response.status == 200)
            try await Task.sleep(for: .milliseconds(200))
            #expect(harness.api.requests.map(\.path) == ["/api/v1/namespaces"], "the body was read as a request")
            #expect(harness.api.requests.first?.body == Array(Self.smuggled.utf8))
        }
    }

    @Test("TRACE is refused: NIO's encoder drops a TRACE body's framing")
    func traceRefused() async throws {
        try await ProxyHarness.run { harness in
            let request =
                "TRACE /api/v1/namespaces HTTP/1.1\r\nHost: p\r\nAuthorization: Bearer \(try harness.issuer.mint())\r\n"
                + "Connection: close\r\nContent-Length: \(Self.smuggled.utf8.count)\r\n\r\n" + Self.smuggled
            let response = try await RawHTTPClient.send(request, port: harness.port, timeout: .seconds(5))
            #expect(response.status == 405)
            try await Task.sleep(for: .milliseconds(200))
            #expect(harness.api.requests.isEmpty)
        }
    }

    @Test(
        "an HTTP/2 request with a body and no content-length goes upstream chunked, whatever its method",
        arguments: ["GET", "DELETE", "OPTIONS", "HEAD", "PROPFIND"])
    func http2BodyWithoutLength(method: String) async throws {
        try await ProxyHarness.run(.servingTLS) { harness in
            let client = try await RawHTTP2Client.connect(harness)
            let block: HPACKHeaders = [
                ":method": method, ":scheme": "https", ":path": "/api/v1/namespaces/a/pods/web",
                ":authority": "127.0.0.1:\(harness.port)", "authorization": "Bearer \(try harness.issuer.mint())",
            ]
            let stream = try await client.open(block, body: Array(Self.smuggled.utf8))
            #expect(try await stream.status() != nil)
            try await Task.sleep(for: .milliseconds(200))
            #expect(
                harness.api.requests.map(\.path) == ["/api/v1/namespaces/a/pods/web"], "the body was read as a request")
            #expect(harness.api.requests.first?.method == method)
            #expect(harness.api.requests.first?.body == Array(Self.smuggled.utf8))
            await client.close()
        }
    }

    @Test("an HTTP/2 content-length NIO accepts in another spelling goes upstream as the plain number")
    func http2ContentLengthSpelling() async throws {
        try await ProxyHarness.run(.servingTLS) { harness in
            let client = try await RawHTTP2Client.connect(harness)
            for spelling in ["+5", "5, 5"] {
                let block: HPACKHeaders = [
                    ":method": "PUT", ":scheme": "https", ":path": "/api/v1/namespaces/a/configmaps/c",
                    ":authority": "127.0.0.1:\(harness.port)", "authorization": "Bearer \(try harness.issuer.mint())",
                    "content-length": spelling,
                ]
                let stream = try await client.open(block, body: Array("hello".utf8))
                #expect(try await stream.status() != nil)
                let seen = try #require(harness.api.requests.last)
                #expect(seen.values("content-length") == ["5"], "for \(spelling)")
                #expect(seen.body == Array("hello".utf8))
            }
            await client.close()
        }
    }

    @Test(
        "a client waiting for 100 Continue and answered before its body gets Connection: close and a closed connection")
    func expectContinueAnsweredEarly() async throws {
        try await ProxyHarness.run { harness in
            // If the proxy read on, the request that follows (a client that gave up waiting and
            // moved on) would be taken for the announced body.
            let request =
                "POST /api/v1/namespaces/a/configmaps HTTP/1.1\r\nHost: p\r\nAuthorization: Bearer junk\r\n"
                + "Expect: 100-continue\r\nContent-Length: 40\r\n\r\n"
            let response = try await RawHTTPClient.send(request, port: harness.port, timeout: .seconds(5))
            #expect(response.status == 401)
            #expect(response.text.lowercased().contains("connection: close"))
            #expect(response.closedByServer)
        }
    }

    @Test("a client waiting for 100 Continue gets the API server's, sends its body, and keeps its connection")
    func expectContinueRelayed() async throws {
        try await ProxyHarness.run { harness in
            let token = try harness.issuer.mint()
            let body = #"{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"b"}}"#
            let connection = try await RawConnection.connect(port: harness.port)
            try await connection.send(
                "PUT /api/v1/namespaces/a/configmaps/b HTTP/1.1\r\nHost: p\r\nAuthorization: Bearer \(token)\r\n"
                    + "Content-Type: application/json\r\nExpect: 100-continue\r\n"
                    + "Content-Length: \(body.utf8.count)\r\n\r\n")
            // curl gives up waiting after a second; this waits five, and sends nothing before.
            #expect(
                try await connection.wait(timeout: .seconds(5)) { $0.text.hasPrefix("HTTP/1.1 100 Continue\r\n") },
                "no 100 Continue: \(connection.text)")
            try await connection.send(body)
            #expect(try await connection.wait { $0.text.contains("\r\n\r\n{") && $0.text.hasSuffix("}") })
            #expect(connection.text.contains("\r\n\r\nHTTP/1.1 200 OK\r\n"), "\(connection.text)")
            #expect(harness.api.requests.last.map { String(decoding: $0.body, as: UTF8.self) } == body)
            #expect(!connection.text.lowercased().contains("connection: close"))

            // The same connection serves the next request.
            try await connection.send("GET /version HTTP/1.1\r\nHost: p\r\nAuthorization: Bearer \(token)\r\n\r\n")
            #expect(try await connection.wait { $0.text.contains("v1.33.0-standin") })
            #expect(!connection.peerFinished)
            await connection.close()
        }
    }

    @Test("an HTTP/1.0 client's Expect: 100-continue brings no 100 from the proxy (HTTP/1.0 has none)")
    func expectContinueHTTP10() async throws {
        try await ProxyHarness.run { harness in
            let body = #"{"kind":"ConfigMap"}"#
            let request =
                "PUT /api/v1/namespaces/a/configmaps/b HTTP/1.0\r\nHost: p\r\n"
                + "Authorization: Bearer \(try harness.issuer.mint())\r\nExpect: 100-continue\r\n"
                + "Content-Length: \(body.utf8.count)\r\n\r\n\(body)"
            let response = try await RawHTTPClient.send(request, port: harness.port, timeout: .seconds(5))
            #expect(response.status == 200)
            #expect(!response.text.contains(" 100 "), "\(response.text)")
        }
    }

    @Test("a health check asking to upgrade is answered and its connection closed (nothing after it is parsed)")
    func healthCheckWithUpgrade() async throws {
        try await ProxyHarness.run { harness in
            let request = "GET /healthz HTTP/1.1\r\nHost: p\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
            let response = try await RawHTTPClient.send(request, port: harness.port, timeout: .seconds(5))
            #expect(response.status == 200)
            #expect(response.closedByServer, "the connection stayed open, its later bytes never read")
        }
    }

    @Test("a Content-Length the API server names in Connection still frames the response relayed to the client")
    func responseContentLengthNamedInConnection() {
        let upstream = HTTPHeaders([("Connection", "content-length, x-hop"), ("Content-Length", "5"), ("X-Hop", "1")])
        let relayed = ImpersonationHeaders.clientResponseHeaders(upstream)
        #expect(relayed["content-length"] == ["5"])
        #expect(relayed["x-hop"].isEmpty, "the other header named in Connection is still dropped")
        #expect(relayed["connection"].isEmpty)
    }

    @Test("the body of a request answered before it ends is read and dropped up to 256 KiB, then the connection closes")
    func unreadBodyLimit() async throws {
        try await ProxyHarness.run { harness in
            var request = Array(
                ("POST /api/v1/namespaces/a/configmaps HTTP/1.1\r\nHost: p\r\nAuthorization: Bearer junk\r\n"
                    + "Transfer-Encoding: chunked\r\n\r\n").utf8)
            // 400 KiB of body in 4 KiB chunks, and never the last chunk.
            let chunk = Array("1000\r\n".utf8) + [UInt8](repeating: UInt8(ascii: "x"), count: 4096) + Array("\r\n".utf8)
            for _ in 0..<100 { request += chunk }
            let response = try await RawHTTPClient.send(request, port: harness.port, timeout: .seconds(5))
            #expect(response.closedByServer, "the proxy went on reading a body nobody wants")
            #expect(try await harness.get("/healthz", token: nil).status == 200)
        }
    }
}

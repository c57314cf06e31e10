import Gateway
import NIOCore
import NIOHPACK
import NIOHTTP2
import Testbed
import Testing

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
}

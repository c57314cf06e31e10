import Foundation
import Testbed
import Testing

/// Issue #9, HTTP framing, end to end through the real binary: ambiguous or hostile framing is
/// refused before anything is forwarded, and odd request targets never reach another host.
@Suite("Adversarial: HTTP framing and request targets, through the real binary")
struct AdversarialHTTPTests {
    /// A head that frames a body two ways (or in a way no server should guess at), with a
    /// second request behind it that a lenient parser would read as the next request.
    private static func smuggling(_ framing: String, token: String) -> String {
        "POST /api/v1/namespaces HTTP/1.1\r\nHost: p\r\nAuthorization: Bearer \(token)\r\n\(framing)\r\n\r\n"
            + "0\r\n\r\nGET /api/v1/namespaces/kube-system/secrets HTTP/1.1\r\nHost: p\r\n"
            + "Authorization: Bearer \(token)\r\n\r\n"
    }

    @Test(
        "request smuggling (CL+TE, duplicate or odd Content-Length, odd Transfer-Encoding): 400, closed, nothing upstream"
    )
    func smugglingRefused() async throws {
        try await RunningProxy.run { proxy in
            let token = try proxy.issuer.mint()
            for framing in [
                "Content-Length: 5\r\nTransfer-Encoding: chunked", "Transfer-Encoding: chunked\r\nContent-Length: 5",
                "Content-Length: 5\r\nContent-Length: 60", "Content-Length: 5\r\nContent-Length: 5",
                "Content-Length: 5, 5", "Content-Length: +5", "Content-Length: -1", "Content-Length: 0x5",
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity", "Transfer-Encoding: xchunked",
                "Transfer-Encoding: chunked, identity", "Transfer-Encoding: identity",
                "Transfer-Encoding : chunked", "Transfer-Encoding:\tchunked\u{0B}",
            ] {
                try await proxy.expectRefused(
                    Self.smuggling(framing, token: token), status: 400, "\(framing.debugDescription)")
            }
        }
    }

    @Test("obs-fold and bare LF line endings: 400, closed, nothing upstream")
    func foldingAndBareLineFeeds() async throws {
        try await RunningProxy.run { proxy in
            let token = try proxy.issuer.mint()
            for request in [
                "GET /version HTTP/1.1\r\nHost: p\r\nAuthorization: Bearer \(token)\r\nX-Note: a\r\n b\r\n\r\n",
                "GET /version HTTP/1.1\r\nHost: p\r\nAuthorization: Bearer \(token)\r\nX-Note: a\r\n\tImpersonate-User: admin\r\n\r\n",
                "POST /api/v1/namespaces HTTP/1.1\r\nHost: p\r\nAuthorization: Bearer \(token)\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n",
                "GET /version HTTP/1.1\r\n Host: p\r\nAuthorization: Bearer \(token)\r\n\r\n",
                "GET /version HTTP/1.1\nHost: p\nAuthorization: Bearer \(token)\n\n",
                "GET /version HTTP/1.1\r\nHost: p\nAuthorization: Bearer \(token)\r\n\r\n",
                "GET /version HTTP/1.1\r\nHost: p\r\nAuthorization: Bearer \(token)\r\nX-A: b\nImpersonate-User: admin\r\n\r\n",
            ] {
                try await proxy.expectRefused(request, status: 400, "\(request.prefix(80).debugDescription)")
            }
        }
    }

    @Test("an absolute-form target is served by the configured API server only, never by the host it names")
    func absoluteFormTarget() async throws {
        let decoy = try await StandInAPIServer()
        try await stopping(decoy) { decoy in
            try await RunningProxy.run { proxy in
                for target in [
                    "http://127.0.0.1:\(decoy.port)/api/v1/namespaces", "https://127.0.0.1:\(decoy.port)/version",
                ] {
                    let before = proxy.api.requests.count
                    let response = try await proxy.send(try proxy.request(target))
                    #expect(response.status == 200, "\(target): \(response.text.prefix(200))")
                    let seen = proxy.api.requests.dropFirst(before)
                    #expect(seen.map(\.uri) == [target], "the target is forwarded byte for byte")
                    #expect(seen.first?.values("Host") == ["127.0.0.1:\(proxy.api.port)"])
                    #expect(seen.first?.values("Impersonate-User") == ["alice@example.com"])
                }
                #expect(decoy.requests.isEmpty, "the proxy reached the host an absolute-form target names")
                try await proxy.expectServing()
            }
        }
    }

    @Test("CONNECT is refused, with or without a valid token: 405, closed, nothing upstream")
    func connectRefused() async throws {
        try await RunningProxy.run { proxy in
            let token = try proxy.issuer.mint()
            for request in [
                "CONNECT 127.0.0.1:\(proxy.api.port) HTTP/1.1\r\nHost: 127.0.0.1:\(proxy.api.port)\r\nAuthorization: Bearer \(token)\r\n\r\n",
                "CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n",
                "CONNECT /api/v1/namespaces HTTP/1.1\r\nHost: p\r\nAuthorization: Bearer \(token)\r\n\r\n",
            ] {
                // A response to CONNECT carries no body (RFC 9112 §6.3); the encoder sends none.
                try await proxy.expectRefused(
                    request, status: 405, bodyless: true, "\(request.prefix(40).debugDescription)")
            }
        }
    }

    @Test("HTTP/1.0 without Host is served and its connection closed; HTTP/1.1 without Host or with two is refused")
    func missingHost() async throws {
        try await RunningProxy.run { proxy in
            let token = try proxy.issuer.mint()
            let before = proxy.api.requests.count
            let response = try await proxy.send(
                "GET /api/v1/namespaces HTTP/1.0\r\nAuthorization: Bearer \(token)\r\n\r\n")
            #expect(response.status == 200)
            #expect(response.closedByServer)
            #expect(response.body.contains(#""kind":"NamespaceList""#))
            let seen = proxy.api.requests.dropFirst(before)
            #expect(seen.map { $0.values("Host") } == [["127.0.0.1:\(proxy.api.port)"]])
            try await proxy.expectServing()

            for request in [
                "GET /version HTTP/1.1\r\nAuthorization: Bearer \(token)\r\n\r\n",
                "GET /version HTTP/1.1\r\nHost: a\r\nHost: b\r\nAuthorization: Bearer \(token)\r\n\r\n",
            ] {
                try await proxy.expectRefused(request, status: 400, "\(request.debugDescription)")
            }
        }
    }

    @Test(
        "pipelined requests with an upgrade in the middle: each answered in order, nothing after the upgrade parsed as HTTP"
    )
    func pipelinedUpgrade() async throws {
        try await RunningProxy.run { proxy in
            let before = proxy.api.requests.count
            let connection = try await RawConnection.connect(port: proxy.port)
            let upgrade = try proxy.request(
                "/testbed/spdy-echo", method: "POST",
                extra: [
                    "Connection: Upgrade", "Upgrade: SPDY/3.1", "X-Stream-Protocol-Version: portforward.k8s.io",
                    "Content-Length: 0",
                ], close: false)
            let trailing = try proxy.request("/api/v1/namespaces/kube-system/secrets", close: false)
            try await connection.send(try proxy.request(close: false) + upgrade + trailing)
            let switched = try await connection.wait { $0.text.contains("upstream-ready\n") }
            #expect(switched, "got: \(connection.text)")
            let text = connection.text
            let first = try #require(text.range(of: "HTTP/1.1 200 OK\r\n"))
            let second = try #require(text.range(of: "HTTP/1.1 101 Switching Protocols\r\n"))
            #expect(first.lowerBound < second.lowerBound, "the responses came out of order")

            // The session works: bytes sent now are echoed by the spliced upstream.
            try await connection.send("ping through the splice\n")
            #expect(try await connection.wait { $0.text.hasSuffix("ping through the splice\n") })
            // Two answers, no third: the request behind the upgrade is not served as HTTP. (Nor
            // is it spliced: bytes sent before the 101 stay in the stopped HTTP decoder.)
            #expect(connection.text.components(separatedBy: "HTTP/1.1 ").count == 3, "got: \(connection.text)")
            await connection.close()

            let seen = proxy.api.requests.dropFirst(before)
            #expect(seen.map(\.path) == ["/version", "/testbed/spdy-echo"])
            #expect(seen.allSatisfy { $0.values("Impersonate-User") == ["alice@example.com"] })
            try await proxy.expectServing()
        }
    }

    @Test(
        "pipelined requests in one write: answered in order, a health check among them; a malformed one after them gets 400 last"
    )
    func pipelinedInOrder() async throws {
        try await RunningProxy.run { proxy in
            let before = proxy.api.requests.count
            let connection = try await RawConnection.connect(port: proxy.port)
            let health = "GET /healthz HTTP/1.1\r\nHost: proxy\r\n\r\n"
            let pipelined =
                try proxy.request("/version", close: false) + proxy.request("/api/v1/namespaces", close: false)
                + health + proxy.request("/version", close: false) + "NOT HTTP AT ALL\r\n\r\n"
            try await connection.send(pipelined)
            #expect(try await connection.wait { $0.peerFinished }, "got: \(connection.text)")
            let text = connection.text
            // A body has no line end of its own: the next status line follows it directly.
            let statuses = text.components(separatedBy: "HTTP/1.1 ").dropFirst().map { $0.prefix(3) }
            #expect(statuses == ["200", "200", "200", "200", "400"], "got: \(text)")
            // Each body follows its own head: version, namespaces, ok, version, then the 400.
            let markers = ["gitVersion", "NamespaceList", "\r\n\r\nok", "gitVersion", "malformed HTTP request"]
            var searchFrom = text.startIndex
            for marker in markers {
                let found = try #require(text.range(of: marker, range: searchFrom..<text.endIndex), "\(marker)")
                searchFrom = found.upperBound
            }
            let seen = proxy.api.requests.dropFirst(before)
            #expect(seen.map(\.path) == ["/version", "/api/v1/namespaces", "/version"])
            try await proxy.expectServing()
        }
    }

    @Test("a 101 to a request that asked for no upgrade: 502 Status, never spliced, the proxy serves on")
    func bogusSwitchingProtocols() async throws {
        try await RunningProxy.run { proxy in
            let connection = try await RawConnection.connect(port: proxy.port)
            try await connection.send(try proxy.request("/testbed/bogus-101", close: false))
            #expect(try await connection.wait { $0.text.contains("\r\n\r\n{") && $0.text.hasSuffix("}") })
            #expect(connection.text.hasPrefix("HTTP/1.1 502 Bad Gateway\r\n"), "got: \(connection.text)")
            #expect(connection.text.contains(#""kind":"Status""#))
            try await Task.sleep(for: .milliseconds(200))
            #expect(!connection.text.contains("raw bytes"), "the upstream's bytes were spliced")
            #expect(!connection.text.contains("HTTP/1.1 101"))
            await connection.close()
            try await proxy.expectServing()
        }
    }
}

import AsyncHTTPClient
import Config
import Foundation
import Gateway
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import Testbed
import Testing

@Suite("Serving HTTPS: HTTP/2 and HTTP/1.1 by ALPN, certificate rotation")
struct TLSServingTests {
    @Test("over HTTP/2 a request is checked, rewritten and answered as over HTTP/1.1")
    func http2Request() async throws {
        try await ProxyHarness.run(.servingTLS) { harness in
            var request = HTTPClientRequest(url: harness.baseURL + "/api/v1/namespaces")
            request.headers.add(name: "Authorization", value: "Bearer \(try harness.issuer.mint())")
            let response = try await harness.client.execute(request, timeout: .seconds(30))
            #expect(response.version == .http2)
            #expect(response.status == .ok)
            let body = try await response.body.collect(upTo: 1 << 20)
            #expect(String(buffer: body) == StandInAPIServer.namespaceList)
            let seen = try #require(harness.api.requests.first)
            #expect(seen.values("Impersonate-User") == ["alice@example.com"])
            #expect(seen.values("Authorization") == ["Bearer \(harness.api.expectedToken)"])

            var unauthenticated = HTTPClientRequest(url: harness.baseURL + "/api/v1/namespaces")
            unauthenticated.headers.add(name: "Authorization", value: "Bearer junk")
            let refused = try await harness.client.execute(unauthenticated, timeout: .seconds(30))
            #expect(refused.version == .http2)
            #expect(refused.status == .unauthorized)
            #expect(String(buffer: try await refused.body.collect(upTo: 1 << 16)) == unauthorizedStatus)
        }
    }

    @Test("over HTTP/2 a stream whose API server answer is late gets 504; the connection's other streams are answered")
    func http2ResponseHeadTimeout() async throws {
        var options = ProxyHarness.Options.servingTLS
        options.responseHeadTimeout = .seconds(1)
        try await ProxyHarness.run(options) { harness in
            let token = try harness.issuer.mint()
            // The connection (and its HTTP/2) first, so that both requests below share it.
            #expect(try await harness.fetch("/version", token: token).1 == .http2)
            let started = ContinuousClock.now
            async let late = harness.fetch("/testbed/delay?ms=5000", token: token)
            try await Task.sleep(for: .milliseconds(100))
            async let prompt = harness.fetch("/testbed/delay?ms=100", token: token)
            let (promptStatus, promptVersion, _) = try await prompt
            #expect(promptStatus == .ok && promptVersion == .http2)
            let (lateStatus, lateVersion, body) = try await late
            #expect(lateStatus == .gatewayTimeout && lateVersion == .http2)
            #expect(body.contains(#""reason":"Timeout""#))
            #expect(ContinuousClock.now - started < .seconds(4), "the 504 waited for the API server")
            #expect(harness.server.openConnections == 1, "the streams did not share a connection")
        }
    }

    @Test(
        "at a shutdown's deadline the connections left are closed, each as soon as its client answers the TLS close, and their requests logged"
    )
    func closeRemainingAtDeadline() async throws {
        try await ProxyHarness.run(.servingTLS) { harness in
            // The body is kept: a client that drops it resets the stream, and the watch ends.
            let (first, rest) = try await harness.openHTTP2Stream(
                "/api/v1/namespaces?watch=true", token: try harness.issuer.mint())
            #expect(String(buffer: first).contains("ADDED"))
            #expect(await harness.server.drain(deadline: .milliseconds(200)) == false, "the watch ended by itself")
            let started = ContinuousClock.now
            let (count, closed) = await harness.server.closeRemaining(wait: .seconds(4))
            #expect(count == 1 && closed)
            // Not TLS's 5 s shutdown timeout: the client answered at once.
            #expect(ContinuousClock.now - started < .seconds(2), "the close waited for TLS's shutdown timeout")
            #expect(harness.server.openConnections == 0)
            let logged = try await eventually {
                harness.logs.accessLines.contains { $0.metadata["path"] == "/api/v1/namespaces" }
            }
            #expect(logged, "the watch cut short was not logged")
            withExtendedLifetime(rest) {}
            harness.api.releaseWatches()
        }
    }

    @Test("100 concurrent streams on one HTTP/2 connection complete while a watch on the same connection stays open")
    func concurrentStreamsBesideAWatch() async throws {
        try await ProxyHarness.run(.servingTLS) { harness in
            let token = try harness.issuer.mint()
            var (first, watchBody) = try await harness.openHTTP2Stream("/api/v1/namespaces?watch=true", token: token)
            #expect(String(buffer: first).contains("ADDED"))

            let statuses = try await withThrowingTaskGroup(of: UInt.self) { group in
                for index in 0..<100 {
                    group.addTask {
                        var request = HTTPClientRequest(url: harness.baseURL + "/api/v1/namespaces?n=\(index)")
                        request.headers.add(name: "Authorization", value: "Bearer \(token)")
                        let response = try await harness.client.execute(request, timeout: .seconds(60))
                        _ = try await response.body.collect(upTo: 1 << 20)
                        return response.status.code
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(statuses.count == 100)
            #expect(statuses.allSatisfy { $0 == 200 })
            // One HTTP/2 connection carried the watch and all hundred streams.
            #expect(harness.server.openConnections == 1)

            harness.api.releaseWatches()
            var rest = ""
            while let chunk = try await watchBody.next() { rest += String(buffer: chunk) }
            #expect(rest.contains("MODIFIED"))
        }
    }

    @Test("a client asking for HTTP/1.1 over TLS gets HTTP/1.1 (kubectl exec, tested end to end, relies on it)")
    func http11OverTLS() async throws {
        try await ProxyHarness.run(.servingTLS) { harness in
            var tls = TLSConfiguration.makeClientConfiguration()
            tls.trustRoots = .certificates(
                try NIOSSLCertificate.fromPEMBytes(Array(try #require(harness.serving).authority.certificatePEM.utf8)))
            tls.applicationProtocols = ["http/1.1"]
            var configuration = HTTPClient.Configuration(tlsConfiguration: tls)
            configuration.httpVersion = .http1Only
            let client = HTTPClient(eventLoopGroup: MultiThreadedEventLoopGroup.singleton, configuration: configuration)
            var request = HTTPClientRequest(url: harness.baseURL + "/version")
            request.headers.add(name: "Authorization", value: "Bearer \(try harness.issuer.mint())")
            let response = try await client.execute(request, timeout: .seconds(30))
            #expect(response.version == .http1_1)
            #expect(response.status == .ok)
            _ = try await response.body.collect(upTo: 1 << 16)
            try await client.shutdown()
        }
    }

    @Test("a watch over HTTPS outlives the request-head timeout: the handshake's timeout ends with the handshake")
    func watchOutlivesHandshakeTimeout() async throws {
        var options = ProxyHarness.Options.servingTLS
        options.requestHeadTimeout = .milliseconds(500)
        try await ProxyHarness.run(options) { harness in
            let token = try harness.issuer.mint()
            var (first, watch) = try await harness.openHTTP2Stream("/api/v1/namespaces?watch=true", token: token)
            #expect(String(buffer: first).contains("ADDED"))
            try await Task.sleep(for: .milliseconds(1500))
            #expect(harness.api.openHeldStreams == 1, "the watch ended with its connection")
            harness.api.releaseWatches()
            let next = try await watch.next()
            #expect(next.map { String(buffer: $0) }?.contains("MODIFIED") == true)
        }
    }

    @Test("plain HTTP sent to the HTTPS listener is refused cleanly, and the listener keeps serving")
    func plainHTTPToTLSPort() async throws {
        try await ProxyHarness.run(.servingTLS) { harness in
            let response = try await RawHTTPClient.send(
                "GET /healthz HTTP/1.1\r\nHost: p\r\n\r\n", port: harness.port, timeout: .seconds(5))
            #expect(response.status == nil)
            #expect(response.closedByServer)
            var request = HTTPClientRequest(url: harness.baseURL + "/healthz")
            request.method = .GET
            #expect(try await harness.client.execute(request, timeout: .seconds(30)).status == .ok)
        }
    }

    @Test("a renewed certificate is served to new connections while an open watch continues")
    func rotation() async throws {
        try await ProxyHarness.run(.servingTLS) { harness in
            let serving = try #require(harness.serving)
            var watchRequest = HTTPClientRequest(url: harness.baseURL + "/api/v1/namespaces?watch=true")
            watchRequest.headers.add(name: "Authorization", value: "Bearer \(try harness.issuer.mint())")
            let watch = try await harness.client.execute(watchRequest, timeout: .seconds(60))
            var watchBody = watch.body.makeAsyncIterator()
            #expect(String(buffer: try #require(try await watchBody.next())).contains("ADDED"))

            let renewedAuthority = try serving.rotate()
            var logger = Logger(label: "test")
            logger.logLevel = .critical
            #expect(serving.store.reloadIfChanged(logger: logger))

            // New connections trusting the renewed CA succeed; ones trusting only the old CA fail.
            for (authority, shouldSucceed) in [(renewedAuthority, true), (serving.authority, false)] {
                var tls = TLSConfiguration.makeClientConfiguration()
                tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMBytes(Array(authority.certificatePEM.utf8)))
                let client = HTTPClient(
                    eventLoopGroup: MultiThreadedEventLoopGroup.singleton,
                    configuration: HTTPClient.Configuration(tlsConfiguration: tls))
                let result = try? await client.execute(
                    HTTPClientRequest(url: harness.baseURL + "/healthz"), timeout: .seconds(10))
                #expect((result?.status == .ok) == shouldSucceed)
                try await client.shutdown()
            }

            harness.api.releaseWatches()
            var rest = ""
            while let chunk = try await watchBody.next() { rest += String(buffer: chunk) }
            #expect(rest.contains("MODIFIED"), "the watch opened before the rotation must go on")
        }
    }

    @Test("a renewed pair that does not load keeps the current certificate")
    func badRotation() async throws {
        try await ProxyHarness.run(.servingTLS) { harness in
            let serving = try #require(harness.serving)
            try "not a certificate".write(toFile: serving.directory + "/tls.crt", atomically: true, encoding: .utf8)
            var logger = Logger(label: "test")
            logger.logLevel = .critical
            #expect(!serving.store.reloadIfChanged(logger: logger))
            #expect(
                try await harness.client.execute(
                    HTTPClientRequest(url: harness.baseURL + "/healthz"), timeout: .seconds(10)
                ).status == .ok)
        }
    }

    @Test("a certificate file that is not PEM is a startup error naming the flag and the file")
    func invalidCertificateAtStart() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("kip-badtls-\(UUID())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try "garbage".write(toFile: directory + "/tls.crt", atomically: true, encoding: .utf8)
        try "garbage".write(toFile: directory + "/tls.key", atomically: true, encoding: .utf8)
        #expect {
            try ServingCertificateStore(
                ServingTLS(certificateFile: directory + "/tls.crt", privateKeyFile: directory + "/tls.key"))
        } throws: { error in
            "\(error)".hasPrefix("--tls-cert-file: \"\(directory)/tls.crt\" is not a PEM certificate chain")
        }
    }
}

extension ProxyHarness {
    /// A GET through the harness's client: its status, HTTP version and body.
    fileprivate func fetch(_ path: String, token: String) async throws -> (HTTPResponseStatus, HTTPVersion, String) {
        var request = HTTPClientRequest(url: baseURL + path)
        request.headers.add(name: "Authorization", value: "Bearer \(token)")
        let response = try await client.execute(request, timeout: .seconds(30))
        return (response.status, response.version, String(buffer: try await response.body.collect(upTo: 1 << 16)))
    }
}

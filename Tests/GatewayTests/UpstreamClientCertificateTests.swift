import Config
import Foundation
import Testbed
import Testing

@testable import Gateway

/// The proxy's own TLS client certificate for the API server (a kubeconfig's
/// `client-certificate` and `client-key`), against a stand-in that requires one, as
/// kube-apiserver's `--client-ca-file` does.
@Suite("Client certificate to the API server")
struct UpstreamClientCertificateTests {
    /// A client certificate and key written to files, as a kubeconfig names them.
    private struct ClientFiles {
        let directory: String
        var certificate: String { directory + "/client.crt" }
        var key: String { directory + "/client.key" }

        init() throws {
            directory = FileManager.default.temporaryDirectory.appendingPathComponent("kip-client-\(UUID())").path
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        }

        /// Replaces the files (each by a rename, as a Secret update swaps them).
        func write(_ identity: ServerIdentity) throws {
            try writeCertificate(identity)
            try identity.privateKeyPEM.write(toFile: key, atomically: true, encoding: .utf8)
        }

        /// Replaces the certificate file only.
        func writeCertificate(_ identity: ServerIdentity) throws {
            try identity.certificatePEM.write(toFile: certificate, atomically: true, encoding: .utf8)
        }

        func credential(_ identity: ServerIdentity) -> UpstreamCredential {
            .clientCertificate(
                certificatePEM: identity.certificatePEM, privateKeyPEM: identity.privateKeyPEM,
                certificateFile: certificate, keyFile: key)
        }

        func remove() { try? FileManager.default.removeItem(atPath: directory) }
    }

    /// On one event loop: every client connection shares one upstream pool, so a connection
    /// that should not be reused would be.
    private static func options(
        _ authority: TestCertificateAuthority, _ credential: UpstreamCredential, http2: Bool = false,
        relay: Bool = false
    ) -> ProxyHarness.Options {
        var options = ProxyHarness.Options()
        options.upstreamRelay = relay
        options.upstreamClientCertificateAuthority = authority
        options.upstreamCredential = credential
        options.upstreamHTTP2 = http2
        options.singleEventLoop = true
        return options
    }

    /// The subject of the client certificate the stand-in saw with the latest request.
    private static func lastSubject(_ harness: ProxyHarness) -> String? {
        harness.api.requests.last?.clientCertificateSubject
    }

    /// Opens a watch through the proxy and waits for its first event.
    private static func openWatch(_ harness: ProxyHarness, token: String) async throws -> RawConnection {
        let watch = try await RawConnection.connect(port: harness.port)
        try await watch.send(
            "GET /api/v1/namespaces?watch=true HTTP/1.1\r\nHost: p\r\nAuthorization: Bearer \(token)\r\n\r\n")
        #expect(try await watch.wait { $0.text.contains("ADDED") }, "got: \(watch.text)")
        return watch
    }

    /// Lets the stand-in end its watches, and waits for each of `watches` to get its last
    /// chunk before closing it.
    private static func finishWatches(_ harness: ProxyHarness, _ watches: [RawConnection]) async throws {
        harness.api.releaseWatches()
        for watch in watches {
            #expect(try await watch.wait { $0.text.hasSuffix("0\r\n\r\n") }, "got: \(watch.text)")
            await watch.close()
        }
    }

    /// Runs `body` with a proxy whose client certificate (`CN=proxy-first`) and key are files,
    /// and the authority the API server trusts for renewed ones.
    private static func withCertificateFiles(
        http2: Bool = false, relay: Bool = false,
        _ body: (ProxyHarness, ClientFiles, TestCertificateAuthority) async throws -> Void
    ) async throws {
        let authority = try TestCertificateAuthority(commonName: "cluster client CA")
        let first = try authority.issueServerCertificate(commonName: "proxy-first")
        let files = try ClientFiles()
        defer { files.remove() }
        try files.write(first)
        let options = Self.options(authority, files.credential(first), http2: http2, relay: relay)
        try await ProxyHarness.run(options) { harness in
            try await body(harness, files, authority)
        }
    }

    @Test("the proxy presents its client certificate, and no token, to an API server that requires one")
    func presentsCertificate() async throws {
        let authority = try TestCertificateAuthority(commonName: "cluster client CA")
        let identity = try authority.issueServerCertificate(commonName: "kube-impersonate-proxy")
        let credential = UpstreamCredential.clientCertificate(
            certificatePEM: identity.certificatePEM, privateKeyPEM: identity.privateKeyPEM)
        try await ProxyHarness.run(Self.options(authority, credential)) { harness in
            #expect(!harness.credentials.hasClientCertificateFiles)
            let response = try await harness.get("/api/v1/namespaces", token: try harness.issuer.mint())
            #expect(response.status == 200, "\(response.body)")
            let request = try #require(harness.api.requests.last)
            #expect(request.clientCertificateSubject == "CN=kube-impersonate-proxy")
            #expect(request.values("Authorization").isEmpty)
            #expect(request.values("Impersonate-User") == ["alice@example.com"])
            // Inline data has no file to re-read.
            #expect(!harness.credentials.reloadClientCertificateIfChanged(logger: harness.logs.logger()))
        }
    }

    @Test(
        "a client certificate renewed in its files is presented on new connections, while a watch opened before runs on"
    )
    func renewedCertificate() async throws {
        try await Self.withCertificateFiles(http2: true) { harness, files, authority in
            let token = try harness.issuer.mint()
            #expect(harness.credentials.hasClientCertificateFiles)
            #expect(try await harness.get("/api/v1/namespaces", token: token).status == 200)
            #expect(Self.lastSubject(harness) == "CN=proxy-first")
            // A watch, on an HTTP/2 connection to the API server.
            let watch = try await Self.openWatch(harness, token: token)
            #expect(Self.lastSubject(harness) == "CN=proxy-first")

            let logger = harness.logs.logger()
            #expect(!harness.credentials.reloadClientCertificateIfChanged(logger: logger), "nothing changed yet")
            let renewed = try authority.issueServerCertificate(commonName: "proxy-renewed")
            try files.write(renewed)
            #expect(harness.credentials.reloadClientCertificateIfChanged(logger: logger))
            await harness.pool.retireConnections()

            // An ordinary request and a second watch both go on new connections.
            #expect(try await harness.get("/api/v1/namespaces", token: token).status == 200)
            #expect(Self.lastSubject(harness) == "CN=proxy-renewed")
            let second = try await Self.openWatch(harness, token: token)
            #expect(Self.lastSubject(harness) == "CN=proxy-renewed")
            let watchConnections = Set(harness.api.requests.filter { $0.uri.contains("watch") }.map(\.connection))
            #expect(watchConnections.count == 2, "the second watch must not join the retired connection")

            // The first watch was not cut: it gets its last event and ends cleanly.
            try await Self.finishWatches(harness, [watch, second])
            #expect(watch.text.contains("MODIFIED"))
            #expect(second.text.contains("MODIFIED"))
        }
    }

    /// Starts a watch through the proxy while the relay holds the proxy's new connection to the
    /// API server, then renews the certificate and retires the pool's connections while that
    /// connection's handshake waits, and lets the handshake finish.
    private static func watchRenewedWhileConnecting(
        _ harness: ProxyHarness, _ files: ClientFiles, _ authority: TestCertificateAuthority, token: String
    ) async throws -> RawConnection {
        let relay = try #require(harness.relay)
        relay.hold()
        let watch = try await RawConnection.connect(port: harness.port)
        try await watch.send(
            "GET /api/v1/namespaces?watch=true HTTP/1.1\r\nHost: p\r\nAuthorization: Bearer \(token)\r\n\r\n")
        // Held well inside the pool's connect timeout (10 s): the test takes milliseconds.
        try #require(try await eventually { relay.heldConnections == 1 }, "the proxy never dialled the API server")
        try files.write(try authority.issueServerCertificate(commonName: "proxy-renewed"))
        #expect(harness.credentials.reloadClientCertificateIfChanged(logger: harness.logs.logger()))
        await harness.pool.retireConnections()
        relay.release()
        #expect(try await watch.wait { $0.text.contains("ADDED") }, "got: \(watch.text)")
        return watch
    }

    @Test(
        "a renewal while an HTTP/2 connection to the API server opens: that connection serves nothing, the watch goes on a new one"
    )
    func renewedWhileHTTP2ConnectionOpens() async throws {
        try await Self.withCertificateFiles(http2: true, relay: true) { harness, files, authority in
            let token = try harness.issuer.mint()
            let watch = try await Self.watchRenewedWhileConnecting(harness, files, authority, token: token)
            // The connection that finished its handshake with the retired certificate was
            // closed, and the watch went on the next one.
            #expect(harness.relay?.acceptedConnections == 2)
            #expect(harness.api.requests.map(\.clientCertificateSubject) == ["CN=proxy-renewed"])
            try await Self.finishWatches(harness, [watch])
            #expect(try await harness.get("/api/v1/namespaces", token: token).status == 200)
            #expect(Self.lastSubject(harness) == "CN=proxy-renewed")
        }
    }

    @Test(
        "a renewal while a connection that falls back to HTTP/1.1 opens: it serves its watch, and is not reused after"
    )
    func renewedWhileHTTP1FallbackOpens() async throws {
        try await Self.withCertificateFiles(http2: false, relay: true) { harness, files, authority in
            let token = try harness.issuer.mint()
            let watch = try await Self.watchRenewedWhileConnecting(harness, files, authority, token: token)
            // Like a request under way at the renewal, the watch runs on the connection it
            // asked for, with the certificate of its start.
            #expect(Self.lastSubject(harness) == "CN=proxy-first")
            #expect(harness.relay?.acceptedConnections == 1)
            try await Self.finishWatches(harness, [watch])
            // Its connection is not pooled: the next request opens one with the renewed pair.
            #expect(try await harness.get("/api/v1/namespaces", token: token).status == 200)
            #expect(Self.lastSubject(harness) == "CN=proxy-renewed")
            #expect(harness.relay?.acceptedConnections == 2)
            #expect(Set(harness.api.requests.map(\.connection)).count == 2)
        }
    }

    @Test("a request under way when the certificate is renewed finishes, and its connection is not reused")
    func requestUnderWayAtRenewal() async throws {
        try await Self.withCertificateFiles { harness, files, authority in
            let token = try harness.issuer.mint()
            async let slow = harness.get("/testbed/delay?ms=500", token: token)
            while !harness.api.requests.contains(where: { $0.path == "/testbed/delay" }) {
                try await Task.sleep(for: .milliseconds(10))
            }
            let renewed = try authority.issueServerCertificate(commonName: "proxy-renewed")
            try files.write(renewed)
            #expect(harness.credentials.reloadClientCertificateIfChanged(logger: harness.logs.logger()))
            await harness.pool.retireConnections()
            #expect(try await slow.status == 200)
            #expect(Self.lastSubject(harness) == "CN=proxy-first")
            #expect(try await harness.get("/api/v1/namespaces", token: token).status == 200)
            #expect(Self.lastSubject(harness) == "CN=proxy-renewed")
            #expect(Set(harness.api.requests.map(\.connection)).count == 2)
        }
    }

    @Test("a renewed certificate whose key does not match, or a missing file, is logged and the current pair stays")
    func badRenewalKeepsCurrentPair() async throws {
        try await Self.withCertificateFiles { harness, files, authority in
            let token = try harness.issuer.mint()
            let logger = harness.logs.logger()
            // cert-manager updates a Secret's files together, but a hand-made update may land the
            // certificate before its key.
            let firstCertificate = try String(contentsOfFile: files.certificate, encoding: .utf8)
            let next = try authority.issueServerCertificate(commonName: "proxy-next")
            try files.writeCertificate(next)
            #expect(!harness.credentials.reloadClientCertificateIfChanged(logger: logger))
            let warning = try #require(
                harness.logs.all.first { $0.message.contains("does not load; keeping the current one") })
            #expect(warning.level == .warning)
            #expect(warning.text.contains(files.certificate), "\(warning.text)")
            #expect(warning.text.contains(files.key), "\(warning.text)")
            #expect(warning.text.contains("does the client key match the certificate?"), "\(warning.text)")
            // Reported once, not at every poll.
            #expect(!harness.credentials.reloadClientCertificateIfChanged(logger: logger))
            #expect(harness.logs.all.filter { $0.message.contains("does not load") }.count == 1)
            // Put back as it was, the pair in use is no change: nothing is retired.
            try firstCertificate.write(toFile: files.certificate, atomically: true, encoding: .utf8)
            #expect(!harness.credentials.reloadClientCertificateIfChanged(logger: logger))
            try files.writeCertificate(next)
            await harness.pool.retireConnections()
            #expect(try await harness.get("/api/v1/namespaces", token: token).status == 200)
            #expect(Self.lastSubject(harness) == "CN=proxy-first")

            try FileManager.default.removeItem(atPath: files.key)
            #expect(!harness.credentials.reloadClientCertificateIfChanged(logger: logger))
            #expect(!harness.credentials.reloadClientCertificateIfChanged(logger: logger))
            let unreadable = harness.logs.all.filter {
                $0.message.contains("cannot re-read the upstream client certificate")
            }
            #expect(unreadable.count == 1, "reported once while the file stays missing")
            #expect(unreadable.first?.text.contains(files.key) == true, "\(unreadable)")

            // The key lands: the pair loads.
            try files.write(next)
            #expect(harness.credentials.reloadClientCertificateIfChanged(logger: logger))
            await harness.pool.retireConnections()
            #expect(try await harness.get("/api/v1/namespaces", token: token).status == 200)
            #expect(Self.lastSubject(harness) == "CN=proxy-next")
        }
    }

    /// What a renewal can leave in the files: each is refused, naming the file at fault.
    enum BadFile: String, CaseIterable, Sendable {
        case emptyCertificate, keyInCertificateFile, keyNotPEM
    }

    @Test("a renewed file that is not what it should be is refused, naming that file", arguments: BadFile.allCases)
    func badFileNamed(_ bad: BadFile) async throws {
        try await Self.withCertificateFiles { harness, files, authority in
            let other = try authority.issueServerCertificate(commonName: "proxy-other")
            let faulty: String
            switch bad {
            case .emptyCertificate:
                try "".write(toFile: files.certificate, atomically: true, encoding: .utf8)
                faulty = files.certificate
            case .keyInCertificateFile:
                try other.privateKeyPEM.write(toFile: files.certificate, atomically: true, encoding: .utf8)
                faulty = files.certificate
            case .keyNotPEM:
                try files.writeCertificate(other)
                try "not a key".write(toFile: files.key, atomically: true, encoding: .utf8)
                faulty = files.key
            }
            #expect(!harness.credentials.reloadClientCertificateIfChanged(logger: harness.logs.logger()))
            let warning = try #require(harness.logs.all.first { $0.message.contains("does not load") })
            #expect(warning.text.contains("error=\(faulty):"), "\(warning.text)")
            #expect(try await harness.get("/api/v1/namespaces", token: try harness.issuer.mint()).status == 200)
            #expect(Self.lastSubject(harness) == "CN=proxy-first")
        }
    }

    @Test("a client key that does not match its certificate at start is an error naming the file")
    func mismatchedPairAtStart() throws {
        let authority = try TestCertificateAuthority(commonName: "cluster client CA")
        let certificate = try authority.issueServerCertificate(commonName: "proxy")
        let key = try authority.issueServerCertificate(commonName: "other")
        let configuration = UpstreamConfiguration(
            host: "127.0.0.1", port: 6443, certificateAuthorityPEM: authority.certificatePEM,
            credential: .clientCertificate(
                certificatePEM: certificate.certificatePEM, privateKeyPEM: key.privateKeyPEM),
            source: "/etc/proxy/kubeconfig")
        let error = #expect(throws: ConfigurationError.self) { try UpstreamCredentials(configuration: configuration) }
        let message = "\(error.map { "\($0)" } ?? "")"
        #expect(message.contains("/etc/proxy/kubeconfig"), "\(message)")
        #expect(message.contains("does the client key match the certificate?"), "\(message)")
    }
}

import Config
import Gateway
import Issuers
import NIOHTTP1
import Testbed
import Testing

/// `RequestScreening`, the socket-free decision the request-head fuzz target judges: the same
/// checks, in the same order, as a request through the proxy.
@Suite("Screening a request head without sockets")
struct RequestScreeningTests {
    static let now = 1_800_000_000

    let key: TestSigningKey
    let verifier: FixedKeyVerifier

    init() throws {
        key = try TestSigningKey.rsa(kid: "k")
        let configuration = ProxyConfiguration(issuers: [
            IssuerConfiguration(url: "https://idp.example.com", audiences: ["kubernetes"])
        ])
        let jwks = Array(TestJSON.object([("keys", .array([key.publicJWK]))]).serialized.utf8)
        verifier = try #require(FixedKeyVerifier(configuration: configuration, jwks: ["https://idp.example.com": jwks]))
    }

    private func token(email: String = "alice@example.com") throws -> String {
        try TokenMinter.mint(
            claims: [
                "iss": "https://idp.example.com", "aud": "kubernetes", "email": .string(email),
                "groups": ["dev"], "exp": .int(Self.now + 60),
            ], key: key)
    }

    private func screen(
        _ method: HTTPMethod = .GET, _ uri: String = "/api/v1/pods", headers: [(String, String)],
        allowsUpgrade: Bool = true
    ) -> RequestScreening.Decision {
        // HTTP/1.1 requires one Host (RequestHeadPolicy); every case here has it unless it says otherwise.
        let withHost = headers.contains { $0.0.lowercased() == "host" } ? headers : [("Host", "proxy")] + headers
        let head = HTTPRequestHead(version: .http1_1, method: method, uri: uri, headers: HTTPHeaders(withHost))
        return RequestScreening.screen(
            head, allowsUpgrade: allowsUpgrade,
            authenticate: { token in
                switch verifier.authenticate(token: token, now: Double(Self.now)) {
                case .success(let identity): .authenticated(identity)
                case .failure(let rejection): .rejected(rejection, issuer: nil)
                }
            },
            authorization: "Bearer proxy", clientAddress: "192.0.2.1", authority: "api:6443")
    }

    @Test("a valid token is forwarded with the proxy's credential and the identity, the client's own removed")
    func forwarded() throws {
        let decision = screen(
            .POST, "/api/v1/namespaces?dryRun=All",
            headers: [
                ("Authorization", "Bearer \(try token())"), ("X-Remote-User", "admin"), ("Connection", "X-Drop"),
                ("X-Drop", "1"), ("X-Forwarded-For", "10.0.0.1"), ("Content-Length", "2"), ("Accept", "*/*"),
            ])
        guard case .forwarded(let head, let identity) = decision else {
            Issue.record("not forwarded: \(decision)")
            return
        }
        #expect(identity.username == "alice@example.com")
        #expect(head.uri == "/api/v1/namespaces?dryRun=All")
        #expect(head.headers["Authorization"] == ["Bearer proxy"])
        #expect(head.headers["Impersonate-User"] == ["alice@example.com"])
        #expect(head.headers["Impersonate-Group"] == ["dev"])
        #expect(head.headers["X-Forwarded-For"] == ["192.0.2.1"])
        #expect(head.headers["Host"] == ["api:6443"])
        #expect(head.headers["Content-Length"] == ["2"] && head.headers["Accept"] == ["*/*"])
        #expect(!head.headers.contains(name: "X-Remote-User") && !head.headers.contains(name: "X-Drop"))
        #expect(!head.headers.contains(name: "Connection"))
    }

    @Test("header names in any case, and Connection and Transfer-Encoding lists with spaces, tabs and empty items")
    func headerCaseAndLists() throws {
        let decision = screen(
            .POST, "/api/v1/namespaces",
            headers: [
                ("AUTHORIZATION", "Bearer \(try token())"), ("connection", " Keep-Alive ,,\tx-DROP-me\t"),
                ("X-Drop-Me", "1"), ("x-REMOTE-group", "admin"), ("PROXY-Thing", "1"), ("hOsT", "elsewhere"),
                ("X-Forwarded-FOR", "10.0.0.1"), ("Transfer-Encoding", "gzip, CHUNKED"), ("TE", "trailers"),
                ("X-Dropped-Not", "kept"), ("X-Connection-Like", "kept"),
            ])
        guard case .forwarded(let head, _) = decision else {
            Issue.record("not forwarded: \(decision)")
            return
        }
        #expect(head.headers["Host"] == ["api:6443"])
        #expect(head.headers["Authorization"] == ["Bearer proxy"])
        #expect(head.headers["X-Forwarded-For"] == ["192.0.2.1"])
        for dropped in ["Connection", "X-Drop-Me", "X-Remote-Group", "Proxy-Thing", "TE", "Keep-Alive"] {
            #expect(!head.headers.contains(name: dropped), "\(dropped) was forwarded")
        }
        // The decoder removed the chunked framing; the rewrite keeps it for the re-encoder.
        #expect(head.headers["Transfer-Encoding"] == ["chunked"])
        #expect(head.headers["X-Dropped-Not"] == ["kept"] && head.headers["X-Connection-Like"] == ["kept"])

        // "chunked" only as a whole list item, in any case.
        let notChunked = screen(
            .POST, headers: [("Authorization", "Bearer \(try token())"), ("Transfer-Encoding", "xchunked, chunkedx")])
        guard case .forwarded(let plain, _) = notChunked else {
            Issue.record("not forwarded: \(notChunked)")
            return
        }
        #expect(!plain.headers.contains(name: "Transfer-Encoding"))
    }

    @Test("refusals: impersonation 403, no or several tokens 401, a reserved name 403, an upgrade on HTTP/2 400")
    func refused() throws {
        let bearer = ("Authorization", "Bearer \(try token())")
        func status(_ decision: RequestScreening.Decision) -> HTTPResponseStatus? {
            if case .rejected(let status) = decision { return status }
            return nil
        }
        #expect(status(screen(headers: [bearer, ("impersonate-group", "system:masters")])) == .forbidden)
        #expect(status(screen(headers: [])) == .unauthorized)
        #expect(status(screen(headers: [bearer, bearer])) == .unauthorized)
        #expect(status(screen(headers: [("Authorization", "Basic YTpi")])) == .unauthorized)
        let reserved = ("Authorization", "Bearer \(try token(email: "system:admin"))")
        #expect(status(screen(headers: [reserved])) == .forbidden)
        let upgrade = [bearer, ("Connection", "Upgrade"), ("Upgrade", "SPDY/3.1")]
        #expect(status(screen(.POST, headers: upgrade, allowsUpgrade: false)) == .badRequest)
        #expect(status(screen(headers: [bearer, ("Host", "a"), ("Host", "b")])) == .badRequest)
        #expect(status(screen(.CONNECT, "api:6443", headers: [bearer])) == .methodNotAllowed)
        guard case .forwarded(let head, _) = screen(.POST, headers: upgrade) else {
            Issue.record("an upgrade on HTTP/1.1 was not forwarded")
            return
        }
        #expect(head.headers["Connection"] == ["Upgrade"] && head.headers["Upgrade"] == ["SPDY/3.1"])
    }

    @Test("health paths are answered locally, with no token")
    func health() {
        guard case .servedLocally = screen(.GET, "/readyz?verbose", headers: []) else {
            Issue.record("/readyz was not served locally")
            return
        }
    }
}

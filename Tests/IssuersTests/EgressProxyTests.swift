import Config
import Testbed
import Testing

@testable import Issuers

/// Discovery and keys fetched through `HTTPS_PROXY`, except what `NO_PROXY` names, with Go's
/// rules (kube-apiserver fetches them with `http.ProxyFromEnvironment`).
@Suite("Fetching issuer keys through an egress proxy")
struct EgressProxyTests {
    @Test(
        "NO_PROXY as Go reads it: *, IP addresses, CIDR ranges, names with their subdomains, .names without, ports",
        arguments: [
            ("https://issuer.example.com/", "", true),
            ("https://issuer.example.com/", "*", false),
            ("https://issuer.example.com/", "example.com", false),
            ("https://example.com/", "example.com", false),
            ("https://notexample.com/", "example.com", true),
            ("https://issuer.example.com/", ".example.com", false),
            ("https://example.com/", ".example.com", true),
            ("https://issuer.example.com/", "*.example.com", false),
            ("https://issuer.example.com/", "other.org, EXAMPLE.com ", false),
            ("https://issuer.example.com:8443/", "example.com:443", true),
            ("https://issuer.example.com:8443/", "example.com:8443", false),
            ("https://issuer.example.com/", "example.com:443", false),
            ("https://10.1.2.3/", "10.0.0.0/8", false),
            ("https://11.1.2.3/", "10.0.0.0/8", true),
            ("https://10.1.2.3/", "10.1.2.3", false),
            ("https://[2001:db8::1]/", "2001:db8::/32", false),
            ("https://[2001:db9::1]/", "2001:db8::/32", true),
            ("https://127.0.0.1:8443/", "", false),
            ("https://localhost/", "", false),
            ("https://[::1]/", "", false),
            ("https://10.1.2.3/", "10.1.2.3:443", false),
            ("https://10.1.2.3:8443/", "10.1.2.3:443", true),
            ("https://[2001:db8::1]/", "[2001:db8::1]:443", false),
            ("https://[2001:db8::1]:8443/", "[2001:db8::1]:443", true),
            ("https://[2001:db8::1]/", "2001:db8::1", false),
            ("https://issuer.example.com/", "other.org,\n example.com\n", false),
            ("http://issuer.example.com/", "", false),
        ])
    func noProxy(url: String, noProxy: String, proxied: Bool) {
        let egress = EgressProxy(environment: ["HTTPS_PROXY": "http://proxy:3128", "NO_PROXY": noProxy])
        #expect((egress.server(for: url) != nil) == proxied)
    }

    @Test("HTTPS_PROXY: http:// or a bare host, with credentials; the lowercase names too; others refused, saying why")
    func proxyVariable() throws {
        let parsed = { (environment: [String: String]) in EgressProxy(environment: environment).server }
        #expect(parsed([:]) == nil)
        #expect(parsed(["HTTPS_PROXY": "http://proxy.corp:3128"]) == .success(.init(host: "proxy.corp", port: 3128)))
        #expect(parsed(["https_proxy": "proxy.corp"]) == .success(.init(host: "proxy.corp", port: 80)))
        #expect(
            parsed(["HTTPS_PROXY": "http://svc%40corp:p%3Ass@[fd00::1]:8080"])
                == .success(.init(host: "fd00::1", port: 8080, user: "svc@corp", password: "p:ss")))
        #expect(EgressProxy(environment: ["NO_PROXY": "a, b", "no_proxy": "c"]).noProxy == ["a", "b"])
        for (value, message) in [
            ("https://user:secret@proxy:3128", "only an http:// proxy (CONNECT) is supported, not https://"),
            ("socks5://proxy:1080", "only an http:// proxy (CONNECT) is supported, not socks5://"),
            ("http://user:secret@", "is not a proxy URL such as http://proxy:3128"),
        ] {
            guard case .failure(let error) = parsed(["HTTPS_PROXY": value]) else {
                Issue.record("\(value) accepted")
                continue
            }
            #expect(error.description.contains(message))
            #expect(!error.description.contains(value), "the message repeats the value, and so its credentials")
        }
    }

    private static func fetcher(for issuer: StandInIssuer, _ environment: [String: String]) throws -> KeyFetcher {
        let configuration = IssuerConfiguration(
            url: issuer.url, audiences: ["kubernetes"],
            certificateAuthorityPEM: issuer.certificateAuthority.certificatePEM)
        return KeyFetcher(
            configuration: configuration, tls: try KeyFetcher.tlsConfiguration(for: configuration),
            egress: EgressProxy(environment: environment))
    }

    @Test("an issuer only the proxy can reach: discovery and JWKS come through CONNECT, with the proxy's credentials")
    func throughTheProxy() async throws {
        let proxy = try await TestConnectProxy.start()
        let issuer = try await StandInIssuer(host: "issuer.test")
        let fetcher = try Self.fetcher(for: issuer, ["HTTPS_PROXY": "http://svc:secret@127.0.0.1:\(proxy.port)"])
        do {
            let (keys, _) = try await fetcher.fetchKeys()
            #expect(keys.entries.map(\.keyID) == ["rsa-1"])
            let port = issuer.url.split(separator: ":").last.map(String.init) ?? ""
            #expect(!proxy.tunnels.isEmpty)
            #expect(proxy.tunnels.allSatisfy { $0.target == "issuer.test:\(port)" })
            #expect(proxy.tunnels.allSatisfy { $0.proxyAuthorization == "Basic c3ZjOnNlY3JldA==" })
        } catch {
            Issue.record("fetch through the proxy failed: \(error)")
        }
        await fetcher.shutdown()
        await issuer.stop()
        await proxy.stop()
    }

    @Test("NO_PROXY and loopback issuers go direct; an HTTPS_PROXY that does not parse fails the fetch, saying why")
    func directAndBroken() async throws {
        let proxy = try await TestConnectProxy.start()
        let loopback = try await StandInIssuer()
        let direct = try Self.fetcher(for: loopback, ["HTTPS_PROXY": "http://127.0.0.1:\(proxy.port)"])
        let (keys, _) = try await direct.fetchKeys()
        #expect(keys.entries.map(\.keyID) == ["rsa-1"])
        await direct.shutdown()

        let named = try await StandInIssuer(host: "issuer.test")
        let exempt = try Self.fetcher(
            for: named, ["HTTPS_PROXY": "http://127.0.0.1:\(proxy.port)", "NO_PROXY": "example.com,.test"])
        // Direct, to a name no resolver knows: it fails, and never reaches the proxy.
        await #expect(throws: KeyFetchError.self) { try await exempt.fetchKeys() }
        #expect(proxy.tunnels.isEmpty)
        await exempt.shutdown()

        let broken = try Self.fetcher(for: named, ["HTTPS_PROXY": "socks5://127.0.0.1:1080"])
        do {
            _ = try await broken.fetchKeys()
            Issue.record("fetched through an unsupported proxy")
        } catch {
            #expect("\(error)".contains("HTTPS_PROXY: only an http:// proxy (CONNECT) is supported, not socks5://"))
        }
        await broken.shutdown()
        await named.stop()
        await loopback.stop()
        await proxy.stop()
    }
}

import NIOHTTP1
import Testing

@testable import Gateway

@Suite("Request heads refused before authentication")
struct RequestHeadPolicyTests {
    private func head(
        _ method: HTTPMethod = .GET, version: HTTPVersion = .http1_1, hosts: [String] = ["p"]
    ) -> HTTPRequestHead {
        HTTPRequestHead(
            version: version, method: method, uri: "/version", headers: HTTPHeaders(hosts.map { ("Host", $0) }))
    }

    @Test("an ordinary HTTP/1.1 head, an HTTP/1.0 one without Host, and an HTTP/2 one without Host pass")
    func ordinaryHeadsPass() {
        #expect(RequestHeadPolicy.refusal(for: head()) == nil)
        #expect(RequestHeadPolicy.refusal(for: head(.POST)) == nil)
        #expect(RequestHeadPolicy.refusal(for: head(version: .http1_0, hosts: [])) == nil)
        #expect(RequestHeadPolicy.refusal(for: head(version: .http2, hosts: [])) == nil)
    }

    @Test("CONNECT: 405, and an HTTP/1 connection cannot carry more after it")
    func connect() throws {
        let refusal = try #require(RequestHeadPolicy.refusal(for: head(.CONNECT)))
        #expect(refusal.status.code == .methodNotAllowed)
        #expect(refusal.closesConnection)
        let overHTTP2 = try #require(RequestHeadPolicy.refusal(for: head(.CONNECT, version: .http2)))
        #expect(overHTTP2.status.code == .methodNotAllowed)
        #expect(!overHTTP2.closesConnection)
    }

    @Test("HTTP/1.1 without Host, or HTTP/1.x with two: 400 and the connection closed")
    func hostCount() throws {
        for refused in [head(hosts: []), head(hosts: ["a", "b"]), head(version: .http1_0, hosts: ["a", "b"])] {
            let refusal = try #require(RequestHeadPolicy.refusal(for: refused))
            #expect(refusal.status.code == .badRequest)
            #expect(refusal.closesConnection)
        }
    }
}

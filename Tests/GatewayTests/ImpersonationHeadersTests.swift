import Testing

@testable import Gateway

/// The rewrite of request and response heads: which of a client's or the API server's headers
/// are never passed on.
@Suite("Hop-by-hop headers")
struct ImpersonationHeadersTests {
    @Test("the hop-by-hop names match in any case, and names a byte longer or shorter do not")
    func hopByHop() {
        let names = [
            "connection", "keep-alive", "proxy-connection", "proxy-authorization", "proxy-authenticate", "te",
            "trailer", "transfer-encoding", "upgrade",
        ]
        for name in names {
            #expect(ImpersonationHeaders.isHopByHop(name), "\(name)")
            #expect(ImpersonationHeaders.isHopByHop(name.uppercased()), "\(name)")
            #expect(!ImpersonationHeaders.isHopByHop(name + "s"), "\(name)s")
            #expect(!ImpersonationHeaders.isHopByHop(String(name.dropLast())), "\(name) less a byte")
        }
        for name in ["Trailers", "Keep-Alives", "Proxy-Authorizations", "Content-Length", "Authorization", "x-te", ""] {
            #expect(!ImpersonationHeaders.isHopByHop(name), "\(name)")
        }
        #expect(ImpersonationHeaders.isHopByHop("Keep-ALIVE"))
        #expect(ImpersonationHeaders.isHopByHop("tRaNsFeR-eNcOdInG"))
    }
}

import Testing

@testable import Gateway

/// `ProxyHandler.path(of:)`: the request target without its query, as the access log writes it
/// and the health paths are matched. A query can carry anything, a token included.
@Suite("The path of a request target")
struct RequestPathTests {
    @Test(
        "everything before the first ?, byte for byte",
        arguments: [
            ("/api/v1/namespaces", "/api/v1/namespaces"),
            ("/api/v1/namespaces?watch=true&token=secret", "/api/v1/namespaces"),
            ("/readyz?verbose", "/readyz"),
            ("?only=query", ""),
            ("", ""),
            ("/a?b?c", "/a"),
            ("/ünïcode/päth?q=ü", "/ünïcode/päth"),
            ("http://host/abs?x", "http://host/abs"),
        ])
    func pathWithoutQuery(_ target: String, _ path: String) {
        #expect(ProxyHandler.path(of: target) == path[...])
    }
}

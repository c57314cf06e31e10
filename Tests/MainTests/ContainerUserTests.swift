import Foundation
import Testbed
import Testing

/// The container image runs the proxy as an unprivileged user (`USER 65532:65532`), and so do
/// most clusters' pod security settings. Nothing the proxy does to serve may need a privilege:
/// a socket option that does (SO_DEBUG, set by mistake for TCP_NODELAY) fails every connection.
@Suite("Serving as the container image's unprivileged user, through the real binary")
struct ContainerUserTests {
    /// The real user ID of a running process, from `/proc`.
    static func userID(of process: Process) throws -> Int? {
        let status = try String(contentsOfFile: "/proc/\(process.processIdentifier)/status", encoding: .utf8)
        let line = status.split(separator: "\n").first { $0.hasPrefix("Uid:") }
        return line.flatMap { $0.split(whereSeparator: \.isWhitespace).dropFirst().first }.flatMap { Int($0) }
    }

    @Test(
        "as uid 65532 (or the tests' own unprivileged user) the proxy answers /readyz and proxies a request over HTTP/1.1 and HTTP/2 upstreams",
        arguments: [false, true])
    func servesUnprivileged(upstreamHTTP2: Bool) async throws {
        try await RunningProxy.run(upstreamHTTP2: upstreamHTTP2, unprivileged: true) { proxy in
            let expectedUser = getuid() == 0 ? ProxyBinary.containerUser : Int(getuid())
            #expect(try Self.userID(of: proxy.process) == expectedUser)
            for _ in 0..<2 {
                let (status, groups) = try await proxy.get()
                #expect(status == 200, "proxy log:\n\(proxy.log)")
                #expect(groups == ["v1:developers"])
            }
        }
    }
}

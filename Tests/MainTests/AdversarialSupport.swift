import Foundation
import NIOCore
import Testbed
import Testing

/// What the adversarial suites check after every hostile input: the answer, that nothing (or
/// exactly what is allowed) reached the API server, and that the same process still serves.
extension RunningProxy {
    /// Sends `request` byte for byte on a new connection and returns all the proxy sent back
    /// until it closed the connection (or `timeout` passed).
    func send(_ request: String, timeout: TimeAmount = .seconds(10)) async throws -> RawHTTPClient.Response {
        try await RawHTTPClient.send(request, port: port, timeout: timeout)
    }

    /// Sends `request` and expects `status` as a Kubernetes `Status` JSON answer (or, with
    /// `bodyless`, no body at all), the connection closed, and nothing at the API server; then
    /// checks the process still serves.
    func expectRefused(
        _ request: String, status: Int, bodyless: Bool = false, _ comment: Comment? = nil,
        sourceLocation: SourceLocation = #_sourceLocation
    ) async throws {
        let before = api.requests.count
        let response = try await send(request)
        let what = comment ?? "\(request.prefix(120).debugDescription)"
        #expect(response.status == status, "\(what): got \(response.text.prefix(300))", sourceLocation: sourceLocation)
        if bodyless {
            #expect(response.body.isEmpty, "\(what)", sourceLocation: sourceLocation)
        } else {
            #expect(response.body.contains(#""kind":"Status""#), "\(what)", sourceLocation: sourceLocation)
            #expect(response.body.contains(#""code":\#(status)"#), "\(what)", sourceLocation: sourceLocation)
        }
        #expect(response.closedByServer, "\(what): the connection stays open", sourceLocation: sourceLocation)
        #expect(api.requests.count == before, "\(what): reached the API server", sourceLocation: sourceLocation)
        try await expectServing(sourceLocation: sourceLocation)
    }

    /// For each of `headers` (one or more lines), sends a normal request with it added and expects `status`.
    func expectRefused(
        eachHeader headers: [String], status: Int, sourceLocation: SourceLocation = #_sourceLocation
    ) async throws {
        for header in headers {
            try await expectRefused(
                try request(extra: [header]), status: status, "\(header.debugDescription)",
                sourceLocation: sourceLocation)
        }
    }

    /// Mints a correctly signed token for `email` and `groups` and expects it refused with `status`.
    func expectRefused(
        email: String, groups: [String], status: Int, sourceLocation: SourceLocation = #_sourceLocation
    ) async throws {
        let token = try issuer.mint(issuer.claims(email: email, groups: groups))
        try await expectRefused(
            try request(token: token), status: status,
            "email \(email.debugDescription), groups \(groups.debugDescription)", sourceLocation: sourceLocation)
    }

    /// The process is alive and a normal authenticated request is served, as alice.
    func expectServing(sourceLocation: SourceLocation = #_sourceLocation) async throws {
        #expect(process.isRunning, "the proxy exited:\n\(log.suffix(2000))", sourceLocation: sourceLocation)
        let before = api.requests.count
        let response = try await get("/version")
        #expect(response.status == 200, "a normal request is no longer served", sourceLocation: sourceLocation)
        let seen = api.requests.dropFirst(before)
        #expect(seen.map { $0.values("Impersonate-User") } == [["alice@example.com"]], sourceLocation: sourceLocation)
    }

    /// A request head for `path` with `token` (nil: a fresh one from the stand-in issuer), then
    /// `extra` header lines and, with `close`, `Connection: close`.
    func request(
        _ path: String = "/version", method: String = "GET", token: String? = nil, extra: [String] = [],
        close: Bool = true
    ) throws -> String {
        let bearer = try token ?? issuer.mint()
        let lines =
            ["\(method) \(path) HTTP/1.1", "Host: proxy", "Authorization: Bearer \(bearer)"] + extra
            + (close ? ["Connection: close"] : [])
        return lines.joined(separator: "\r\n") + "\r\n\r\n"
    }

    /// The proxy process's resident set size, from `/proc/<pid>/status`.
    var residentBytes: Int {
        get throws {
            let status = try String(
                contentsOfFile: "/proc/\(process.processIdentifier)/status", encoding: .utf8)
            guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
                let kilobytes = Int(line.split(separator: " ")[1])
            else { throw TestbedError("no VmRSS in /proc/\(process.processIdentifier)/status") }
            return kilobytes * 1024
        }
    }
}

/// A plain blocking TCP socket to loopback with no event loop behind it: thousands cost one file
/// descriptor each, and one that is never read from really never reads.
final class ClientSocket {
    let descriptor: Int32

    /// Connects to `port`; `receiveBufferBytes` shrinks the kernel's receive buffer.
    init(port: Int, receiveBufferBytes: Int32? = nil) throws {
        descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { throw TestbedError("socket() failed: errno \(errno)") }
        if var size = receiveBufferBytes {
            setsockopt(descriptor, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(port).bigEndian
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
        // On failure the descriptor is closed by `deinit`.
        guard connected else { throw TestbedError("connect() failed: errno \(errno)") }
    }

    /// Sends all of `text`; false when the peer has closed the connection.
    @discardableResult
    func send(_ text: String) -> Bool {
        var bytes = Array(text.utf8)[...]
        while !bytes.isEmpty {
            let sent = bytes.withUnsafeBytes { Glibc.send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard sent > 0 else { return false }
            bytes = bytes.dropFirst(sent)
        }
        return true
    }

    /// Reads until the peer closes the connection (EOF or reset) or `timeout` passes without a
    /// byte; returns what arrived and whether the peer closed.
    func receiveAll(timeout: Duration = .seconds(10)) -> (bytes: [UInt8], closed: Bool) {
        let seconds = timeout.components.seconds
        var interval = timeval(tv_sec: Int(seconds), tv_usec: 0)
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &interval, socklen_t(MemoryLayout<timeval>.size))
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = buffer.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
            if count > 0 {
                received += buffer[0..<count]
            } else {
                let timedOut = count < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)
                return (received, !timedOut)
            }
        }
    }

    /// Reads until `count` bytes have arrived, the peer closes, or 10 s pass without a byte;
    /// returns how many bytes were read (and dropped).
    func receive(atMost count: Int) -> Int {
        var interval = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &interval, socklen_t(MemoryLayout<timeval>.size))
        var total = 0
        var buffer = [UInt8](repeating: 0, count: 65536)
        while total < count {
            let received = buffer.withUnsafeMutableBytes {
                recv(descriptor, $0.baseAddress, min($0.count, count - total), 0)
            }
            guard received > 0 else { break }
            total += received
        }
        return total
    }

    /// Bounds how long one `send` may block on a peer that stops reading.
    func setSendTimeout(_ timeout: Duration) {
        var interval = timeval(tv_sec: Int(timeout.components.seconds), tv_usec: 0)
        setsockopt(descriptor, SOL_SOCKET, SO_SNDTIMEO, &interval, socklen_t(MemoryLayout<timeval>.size))
    }

    /// Whether the peer has closed the connection (EOF or reset), looking without waiting.
    var peerClosed: Bool {
        var byte: UInt8 = 0
        let received = recv(descriptor, &byte, 1, Int32(MSG_PEEK | MSG_DONTWAIT))
        return received == 0 || (received < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
    }

    /// Whether any byte has arrived, looking without waiting or consuming it.
    var hasReceivedBytes: Bool {
        var byte: UInt8 = 0
        return recv(descriptor, &byte, 1, Int32(MSG_PEEK | MSG_DONTWAIT)) > 0
    }

    private var isClosed = false

    func close() {
        guard !isClosed else { return }
        isClosed = true
        Glibc.close(descriptor)
    }

    deinit {
        close()
    }
}

/// Makes sure this process (and the proxy it starts, which inherits the limit) may open at
/// least `count` file descriptors, raising the soft limit up to the hard one if need be.
/// Returns how many it may actually open.
func raiseOpenFileLimit(to count: Int) -> Int {
    var limit = rlimit()
    guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 1024 }
    if limit.rlim_cur < rlim_t(count) {
        limit.rlim_cur = min(rlim_t(count), limit.rlim_max)
        _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        _ = getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    }
    return Int(limit.rlim_cur)
}

extension RunningProxy {
    /// Runs the proxy trusting two issuers: the stand-in one (groups prefixed `a:`) and `second`
    /// (named `second`, groups prefixed `b:`).
    static func run(alsoTrusting second: StandInIssuer, _ body: (RunningProxy) async throws -> Void) async throws {
        try await run(
            configAt: { directory, yaml in
                let secondEntry = configYAML(issuer: second, groupsPrefix: "b:")
                    .split(separator: "\n", omittingEmptySubsequences: false)
                    .drop { $0 != "jwt:" }.dropFirst().joined(separator: "\n")
                    .replacingOccurrences(of: "name: standin", with: "name: second")
                let path = directory.appendingPathComponent("config.yaml").path
                try (yaml + secondEntry).write(toFile: path, atomically: true, encoding: .utf8)
                return path
            }, groupsPrefix: "a:", body)
    }
}

/// A stand-in server a test starts beside the proxy's own.
protocol StandInServer {
    func stop() async
}

extension StandInIssuer: StandInServer {}
extension StandInAPIServer: StandInServer {}

/// Runs `body` with `server`, then stops it whatever happens.
func stopping<Server: StandInServer>(_ server: Server, _ body: (Server) async throws -> Void) async throws {
    do {
        try await body(server)
    } catch {
        await server.stop()
        throw error
    }
    await server.stop()
}

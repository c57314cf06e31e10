import Foundation
import Testbed
import Testing

@testable import Gateway

/// The TCP options of the proxy's sockets, read back from the kernel after one request.
///
/// A quiet connection whose peer vanished is found out by TCP keep-alive: on client connections
/// with kube-apiserver's period (3 minutes), on connections to the API server with client-go's
/// (30 seconds). `TCP_NODELAY` is a TCP-level option: set at the socket level, its number (1)
/// is `SO_DEBUG`, which an unprivileged process (the container runs as uid 65532) may not set,
/// so every connection failed there.
@Suite("TCP options on client and API server connections")
struct TCPKeepAliveTests {
    /// A socket in `/proc/net/tcp`: its ports, its state, and its timer (kind, clock ticks left).
    struct Socket {
        var localPort: Int
        var remotePort: Int
        /// The kernel's TCP state: 1 established, 8 close-wait (the peer has closed, this end not yet).
        var state: Int
        var timerKind: Int
        var timerTicks: Int
    }

    /// Every IPv4 TCP socket of the machine.
    static func sockets() throws -> [Socket] {
        // Read to the end: a file of /proc reports no size, and a busy table spans many reads.
        let file = try #require(FileHandle(forReadingAtPath: "/proc/net/tcp"))
        defer { try? file.close() }
        let table = String(decoding: try file.readToEnd() ?? Data(), as: UTF8.self)
        return table.split(separator: "\n").dropFirst().compactMap { line in
            let fields = line.split(separator: " ")
            guard fields.count > 5 else { return nil }
            let port = { (address: Substring) in Int(address.split(separator: ":")[1], radix: 16) ?? -1 }
            let timer = fields[5].split(separator: ":")
            return Socket(
                localPort: port(fields[1]), remotePort: port(fields[2]), state: Int(fields[3], radix: 16) ?? -1,
                timerKind: Int(timer[0], radix: 16) ?? -1, timerTicks: Int(timer[1], radix: 16) ?? -1)
        }
    }

    static func establishedSockets() throws -> [Socket] {
        try sockets().filter { $0.state == 1 }
    }

    /// A `TCP_NODELAY` or `SO_DEBUG` value of one of this process's connected sockets.
    struct SocketOption {
        var localPort: Int
        var remotePort: Int
        var value: Int32
    }

    /// The option's value on every connected IPv4 socket among this process's descriptors.
    static func connectedSockets(level: Int32, option: Int32) throws -> [SocketOption] {
        let descriptors = try FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").compactMap { Int32($0) }
        return descriptors.compactMap { descriptor in
            var value: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            guard let local = port(of: descriptor, getsockname), let remote = port(of: descriptor, getpeername),
                getsockopt(descriptor, level, option, &value, &length) == 0
            else { return nil }
            return SocketOption(localPort: local, remotePort: remote, value: value)
        }
    }

    private static func port(
        of descriptor: Int32, _ name: (Int32, UnsafeMutablePointer<sockaddr>, UnsafeMutablePointer<socklen_t>) -> Int32
    ) -> Int? {
        var address = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let named = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { name(descriptor, $0, &length) == 0 }
        }
        guard named, address.sin_family == sa_family_t(AF_INET) else { return nil }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    /// Runs `body` once a request has gone through a proxy: its client connection is open and
    /// idle, and so is the pooled API server connection.
    static func afterOneRequest(_ body: (ProxyHarness) throws -> Void) async throws {
        try await ProxyHarness.run { harness in
            let client = try await RawConnection.connect(port: harness.port)
            try await client.send(
                "GET /api/v1/namespaces HTTP/1.1\r\nHost: p\r\nAuthorization: Bearer \(try harness.issuer.mint())\r\n\r\n"
            )
            #expect(try await client.wait { $0.text.contains("NamespaceList") })
            try body(harness)
            await client.close()
        }
    }

    @Test("client and API server connections have TCP_NODELAY set at the TCP level, and no SO_DEBUG")
    func noDelayWithoutDebug() async throws {
        try await Self.afterOneRequest { harness in
            for (level, option, expected) in [(Int32(IPPROTO_TCP), TCP_NODELAY, Int32(1)), (SOL_SOCKET, SO_DEBUG, 0)] {
                let sockets = try Self.connectedSockets(level: level, option: option)
                // The proxy's end of each connection: accepted on its port, and dialled to the API server.
                let accepted = sockets.filter { $0.localPort == harness.port }
                let upstream = sockets.filter { $0.remotePort == harness.api.port }
                #expect(!accepted.isEmpty && !upstream.isEmpty)
                for socket in accepted + upstream {
                    #expect(socket.value == expected, "option \(option) at level \(level): \(socket)")
                }
            }
        }
    }

    @Test(
        "keep-alive probes start after, and repeat every, 180 s on client connections and 30 s on API server connections"
    )
    func keepAlivePeriods() async throws {
        try await Self.afterOneRequest { harness in
            for option in [TCP_KEEPIDLE, TCP_KEEPINTVL] {
                let sockets = try Self.connectedSockets(level: Int32(IPPROTO_TCP), option: option)
                let accepted = sockets.filter { $0.localPort == harness.port }
                let upstream = sockets.filter { $0.remotePort == harness.api.port }
                #expect(!accepted.isEmpty && !upstream.isEmpty)
                for socket in accepted {
                    #expect(socket.value == Int32(TCPKeepAlive.clientPeriodSeconds), "option \(option): \(socket)")
                }
                for socket in upstream {
                    #expect(socket.value == Int32(TCPKeepAlive.upstreamPeriodSeconds), "option \(option): \(socket)")
                }
            }
            #expect(TCPKeepAlive.clientPeriodSeconds == 180 && TCPKeepAlive.upstreamPeriodSeconds == 30)
        }
    }

    @Test("an idle client connection and the idle pooled API server connection both run the keep-alive timer")
    func keepAliveOnBothSides() async throws {
        try await Self.afterOneRequest { harness in
            let ticksPerSecond = sysconf(Int32(_SC_CLK_TCK))
            // Timer kind 2 is keep-alive; its ticks count down to the first probe.
            let accepted = try Self.establishedSockets().filter { $0.localPort == harness.port }
            #expect(!accepted.isEmpty)
            for socket in accepted {
                #expect(socket.timerKind == 2, "client connection without keep-alive: \(socket)")
                #expect(socket.timerTicks <= TCPKeepAlive.clientPeriodSeconds * ticksPerSecond)
                #expect(socket.timerTicks > TCPKeepAlive.upstreamPeriodSeconds * ticksPerSecond)
            }
            let upstream = try Self.establishedSockets().filter { $0.remotePort == harness.api.port }
            #expect(!upstream.isEmpty)
            for socket in upstream {
                #expect(socket.timerKind == 2, "API server connection without keep-alive: \(socket)")
                #expect(socket.timerTicks <= TCPKeepAlive.upstreamPeriodSeconds * ticksPerSecond)
            }
        }
    }
}

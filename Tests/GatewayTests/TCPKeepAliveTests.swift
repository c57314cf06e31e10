import Foundation
import Testbed
import Testing

@testable import Gateway

/// A quiet connection whose peer vanished is found out by TCP keep-alive: on client connections
/// with kube-apiserver's period (3 minutes), on connections to the API server with client-go's
/// (30 seconds). Read from the kernel's own table of this process's sockets.
@Suite("TCP keep-alive on client and API server connections")
struct TCPKeepAliveTests {
    /// An established socket in `/proc/net/tcp`: its ports, and its timer (kind, clock ticks left).
    struct Socket {
        var localPort: Int
        var remotePort: Int
        var timerKind: Int
        var timerTicks: Int
    }

    static func establishedSockets() throws -> [Socket] {
        // Read to the end: a file of /proc reports no size, and a busy table spans many reads.
        let file = try #require(FileHandle(forReadingAtPath: "/proc/net/tcp"))
        defer { try? file.close() }
        let table = String(decoding: try file.readToEnd() ?? Data(), as: UTF8.self)
        return table.split(separator: "\n").dropFirst().compactMap { line in
            let fields = line.split(separator: " ")
            guard fields.count > 5, fields[3] == "01" else { return nil }  // ESTABLISHED
            let port = { (address: Substring) in Int(address.split(separator: ":")[1], radix: 16) ?? -1 }
            let timer = fields[5].split(separator: ":")
            return Socket(
                localPort: port(fields[1]), remotePort: port(fields[2]), timerKind: Int(timer[0], radix: 16) ?? -1,
                timerTicks: Int(timer[1], radix: 16) ?? -1)
        }
    }

    @Test("an idle client connection and the idle pooled API server connection both run the keep-alive timer")
    func keepAliveOnBothSides() async throws {
        try await ProxyHarness.run { harness in
            let client = try await RawConnection.connect(port: harness.port)
            try await client.send(
                "GET /api/v1/namespaces HTTP/1.1\r\nHost: p\r\nAuthorization: Bearer \(try harness.issuer.mint())\r\n\r\n"
            )
            #expect(try await client.wait { $0.text.contains("NamespaceList") })
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
            await client.close()
        }
    }
}

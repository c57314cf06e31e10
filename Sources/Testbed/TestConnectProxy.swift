import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// An HTTP CONNECT proxy on loopback, standing in for a cluster's egress proxy: it records the
/// `host:port` each client asks for (and its `Proxy-Authorization`), opens a connection to that
/// port on 127.0.0.1 whatever the host (so a test can use names no resolver knows), answers
/// 200 and then carries bytes both ways.
public final class TestConnectProxy: Sendable {
    /// One CONNECT request as received.
    public struct Tunnel: Sendable, Equatable {
        public var target: String
        public var proxyAuthorization: String?
    }

    private let channel: any Channel
    private let log: NIOLockedValueBox<[Tunnel]>
    public let port: Int

    private init(channel: any Channel, log: NIOLockedValueBox<[Tunnel]>) {
        self.channel = channel
        self.log = log
        self.port = channel.localAddress?.port ?? 0
    }

    public static func start() async throws -> TestConnectProxy {
        let log = NIOLockedValueBox<[Tunnel]>([])
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ConnectHandler(log: log))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        return TestConnectProxy(channel: channel, log: log)
    }

    /// Every CONNECT received so far.
    public var tunnels: [Tunnel] { log.withLockedValue { $0 } }

    public func stop() async {
        try? await channel.close()
    }

    /// Reads the CONNECT head, dials, answers, then relays.
    private final class ConnectHandler: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer

        private let log: NIOLockedValueBox<[Tunnel]>
        private var head = ByteBuffer()
        private var peer: (any Channel)?
        private var connecting = false

        init(log: NIOLockedValueBox<[Tunnel]>) {
            self.log = log
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            var bytes = unwrapInboundIn(data)
            if let peer {
                peer.writeAndFlush(bytes, promise: nil)
                return
            }
            head.writeBuffer(&bytes)
            let text = String(buffer: head)
            guard !connecting, text.hasSuffix("\r\n\r\n") else { return }
            connecting = true
            let lines = text.split(separator: "\r\n")
            let words = lines.first?.split(separator: " ") ?? []
            guard words.count == 3, words[0] == "CONNECT", let colon = words[1].lastIndex(of: ":"),
                let port = Int(words[1][words[1].index(after: colon)...])
            else {
                context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: "HTTP/1.1 400 Bad Request\r\n\r\n")))
                    .whenComplete { _ in context.close(promise: nil) }
                return
            }
            let authorization = lines.dropFirst().first { $0.lowercased().hasPrefix("proxy-authorization:") }
                .map(Self.headerValue)
            log.withLockedValue { $0.append(Tunnel(target: String(words[1]), proxyAuthorization: authorization)) }
            let client = context.channel
            ClientBootstrap(group: context.eventLoop)
                .channelInitializer { upstream in
                    upstream.eventLoop.makeCompletedFuture {
                        try upstream.pipeline.syncOperations.addHandler(Relay(to: client))
                    }
                }
                .connect(host: "127.0.0.1", port: port)
                .assumeIsolatedUnsafeUnchecked()
                .whenComplete { result in
                    switch result {
                    case .success(let upstream):
                        self.peer = upstream
                        client.writeAndFlush(ByteBuffer(string: "HTTP/1.1 200 Connection established\r\n\r\n"))
                        client.closeFuture.whenComplete { _ in upstream.close(promise: nil) }
                    case .failure:
                        client.writeAndFlush(ByteBuffer(string: "HTTP/1.1 502 Bad Gateway\r\n\r\n"))
                            .whenComplete { _ in client.close(promise: nil) }
                    }
                }
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            context.close(promise: nil)
        }

        private static func headerValue(_ line: Substring) -> String {
            let afterColon = line.drop { $0 != ":" }.dropFirst()
            return String(afterColon.drop { $0 == " " })
        }
    }

    /// Copies what the dialled side sends to the client, and closes it when that side closes.
    private final class Relay: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer

        private let client: any Channel

        init(to client: any Channel) {
            self.client = client
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            client.writeAndFlush(unwrapInboundIn(data), promise: nil)
        }

        func channelInactive(context: ChannelHandlerContext) {
            client.close(promise: nil)
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            context.close(promise: nil)
        }
    }
}

import Config
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix

/// The proxy's listener: accepts client connections and gives each its HTTP/1.1 pipeline.
public final class ProxyServer: Sendable {
    /// Request heads larger than this are answered 431 by the decoder's limits.
    public static let maximumHeaderBytes = 64 * 1024

    private let channel: any Channel
    public let group: any EventLoopGroup

    /// The address actually bound (useful when the configured port was 0).
    public var localAddress: SocketAddress? { channel.localAddress }

    private init(channel: any Channel, group: any EventLoopGroup) {
        self.channel = channel
        self.group = group
    }

    /// Binds `address` and starts serving. An empty host binds every interface (IPv6 and IPv4,
    /// falling back to IPv4 alone where IPv6 is unavailable).
    public static func start(
        address: ListenAddress, group: any EventLoopGroup, gateway: GatewayContext
    ) async throws -> ProxyServer {
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.maxMessagesPerRead, value: 16)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try configureHTTPPipeline(channel.pipeline.syncOperations, gateway: gateway)
                }
            }
        let channel: any Channel
        if address.host.isEmpty {
            do {
                channel = try await bootstrap.bind(host: "::", port: address.port).get()
            } catch {
                channel = try await bootstrap.bind(host: "0.0.0.0", port: address.port).get()
            }
        } else {
            channel = try await bootstrap.bind(host: address.host, port: address.port).get()
        }
        return ProxyServer(channel: channel, group: group)
    }

    static func configureHTTPPipeline(
        _ pipeline: ChannelPipeline.SynchronousOperations, gateway: GatewayContext
    ) throws {
        var limits = NIOHTTPDecoderLimitConfiguration()
        limits.maxHeaderListSize = maximumHeaderBytes
        limits.maxHeaderFieldSize = maximumHeaderBytes
        limits.maxHeaderFieldCount = 512
        try pipeline.configureHTTPServerPipeline(
            withPipeliningAssistance: true, withErrorHandling: false, withOutboundHeaderValidation: true,
            withEncoderConfiguration: .init(), withDecoderLimitConfiguration: limits)
        try pipeline.addHandler(ProtocolErrorHandler())
        try pipeline.addHandler(ProxyHandler(gateway: gateway))
    }

    /// Stops accepting connections; open ones continue.
    public func stopAccepting() async {
        try? await channel.close()
    }
}

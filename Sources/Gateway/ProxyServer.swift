import Config
import Logging
import NIOCore
import NIOExtras
import NIOHTTP1
import NIOPosix
import NIOSSL

/// The proxy's listener: accepts client connections and gives each its HTTP/1.1 pipeline.
public final class ProxyServer: Sendable {
    /// Request heads larger than this are answered 431 by the decoder's limits.
    public static let maximumHeaderBytes = 64 * 1024

    private let channel: any Channel
    private let quiescing: ServerQuiescingHelper
    private let limiter: ConnectionLimiter
    public let group: any EventLoopGroup

    /// The address actually bound (useful when the configured port was 0).
    public var localAddress: SocketAddress? { channel.localAddress }

    /// Client connections open now.
    public var openConnections: Int { limiter.openConnections }

    private init(
        channel: any Channel, quiescing: ServerQuiescingHelper, limiter: ConnectionLimiter, group: any EventLoopGroup
    ) {
        self.channel = channel
        self.quiescing = quiescing
        self.limiter = limiter
        self.group = group
    }

    /// Binds `address` and starts serving. An empty host binds every interface (IPv6 and IPv4,
    /// falling back to IPv4 alone where IPv6 is unavailable).
    /// - Parameter tls: serve HTTPS with this context; nil serves plain HTTP.
    public static func start(
        address: ListenAddress, group: any EventLoopGroup, gateway: GatewayContext, tls: NIOSSLContext? = nil
    ) async throws -> ProxyServer {
        let quiescing = ServerQuiescingHelper(group: group)
        let limiter = ConnectionLimiter(maximum: gateway.maximumConnections)
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(quiescing.makeServerChannelHandler(channel: channel))
                    try channel.pipeline.syncOperations.addHandler(limiter)
                }
            }
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .childChannelOption(.maxMessagesPerRead, value: 16)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tls {
                        try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls))
                    }
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
        return ProxyServer(channel: channel, quiescing: quiescing, limiter: limiter, group: group)
    }

    static func configureHTTPPipeline(
        _ pipeline: ChannelPipeline.SynchronousOperations, gateway: GatewayContext
    ) throws {
        // The splice end sits in front of the HTTP handlers, passing bytes through until an
        // upgrade is answered 101; from then on it carries them raw.
        let splice = SpliceHandler.passThrough()
        try pipeline.addHandler(splice)
        var limits = NIOHTTPDecoderLimitConfiguration()
        limits.maxHeaderListSize = maximumHeaderBytes
        limits.maxHeaderFieldSize = maximumHeaderBytes
        limits.maxHeaderFieldCount = 512
        try pipeline.configureHTTPServerPipeline(
            withPipeliningAssistance: true, withErrorHandling: false, withOutboundHeaderValidation: true,
            withEncoderConfiguration: .init(), withDecoderLimitConfiguration: limits)
        try pipeline.addHandler(ProtocolErrorHandler())
        try pipeline.addHandler(ProxyHandler(gateway: gateway, clientSplice: splice))
    }

    /// Stops accepting connections; open ones continue.
    public func stopAccepting() async {
        try? await channel.close()
    }

    /// Graceful shutdown: stops accepting, closes idle connections, lets each request in flight
    /// finish and then closes its connection; upgraded sessions run on until they end. Returns
    /// when every connection is closed, or when `deadline` passes (true: all drained).
    public func drain(deadline: Duration) async -> Bool {
        let promise = channel.eventLoop.makePromise(of: Void.self)
        quiescing.initiateShutdown(promise: promise)
        return await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                (try? await promise.futureResult.get()) != nil
            }
            group.addTask {
                try? await Task.sleep(for: deadline)
                return false
            }
            let drained = await group.next() ?? false
            group.cancelAll()
            return drained
        }
    }
}

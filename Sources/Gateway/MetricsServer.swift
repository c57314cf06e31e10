import Config
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import ServiceLifecycle

/// The second listener (`--metrics-addr`): plain HTTP, serving `/metrics` in the Prometheus
/// text format and the same `/healthz`, `/livez` and `/readyz` as the proxy listener. It proxies
/// nothing and needs no token.
public final class MetricsServer: Sendable {
    private let channel: any Channel

    /// The address actually bound (useful when the configured port was 0).
    public var localAddress: SocketAddress? { channel.localAddress }

    private init(channel: any Channel) {
        self.channel = channel
    }

    /// Binds `address` and starts serving. An empty host binds every interface.
    public static func start(
        address: ListenAddress, group: any EventLoopGroup, gateway: GatewayContext
    ) async throws -> MetricsServer {
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 64)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    var limits = NIOHTTPDecoderLimitConfiguration()
                    limits.maxHeaderListSize = 16 * 1024
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(
                        withPipeliningAssistance: true, withErrorHandling: true, withOutboundHeaderValidation: true,
                        withEncoderConfiguration: .init(), withDecoderLimitConfiguration: limits)
                    // A connection silent for a minute is closed: scrapers and probes are quick.
                    try channel.pipeline.syncOperations.addHandler(IdleStateHandler(allTimeout: .seconds(60)))
                    try channel.pipeline.syncOperations.addHandler(MetricsHandler(gateway: gateway))
                }
            }
        let channel = try await bootstrap.bind(listening: address)
        return MetricsServer(channel: channel)
    }

    /// Stops accepting connections.
    public func stop() async {
        try? await channel.close()
    }
}

/// Runs the metrics listener until graceful shutdown reaches it. Listed before the proxy's
/// service in the service group, it is shut down after the proxy has drained, so `/readyz`
/// stays visible (and failing) here for the whole drain.
public struct MetricsService: Service {
    private let server: MetricsServer

    public init(server: MetricsServer) {
        self.server = server
    }

    public func run() async throws {
        try? await gracefulShutdown()
        await server.stop()
    }
}

/// Answers one metrics-listener request at a time.
final class MetricsHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let gateway: GatewayContext
    private var head: HTTPRequestHead?

    init(gateway: GatewayContext) {
        self.gateway = gateway
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
        case .body:
            break
        case .end:
            guard let head else { return }
            self.head = nil
            respond(to: head, context: context)
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    private func respond(to head: HTTPRequestHead, context: ChannelHandlerContext) {
        let parts = head.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        let path = parts[0]
        var status = HTTPResponseStatus.ok
        var contentType = "text/plain; charset=utf-8"
        var body: String
        if head.method != .GET && head.method != .HEAD {
            status = .methodNotAllowed
            body = "405 method not allowed\n"
        } else if path == "/metrics" {
            gateway.metrics.update(reloads: gateway.reloadStatus.current, issuers: gateway.issuers.current)
            contentType = "text/plain; version=0.0.4; charset=utf-8"
            body = gateway.metrics.exposition()
        } else if HealthEndpoints.handles(path: path) {
            let answer = gateway.health.answer(path: path, query: parts.count > 1 ? parts[1] : nil)
            status = answer.status
            body = answer.body
        } else {
            status = .notFound
            body = "404 page not found\n"
        }
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: contentType)
        headers.add(name: "Cache-Control", value: "no-cache, private")
        headers.add(name: "X-Content-Type-Options", value: "nosniff")
        headers.add(name: "Content-Length", value: String(body.utf8.count))
        if !head.isKeepAlive { headers.add(name: "Connection", value: "close") }
        context.write(
            wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))),
            promise: nil)
        if head.method != .HEAD {
            context.write(
                wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: body)))), promise: nil)
        }
        let keepAlive = head.isKeepAlive
        context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in
            if !keepAlive { context.close(promise: nil) }
        }
    }
}

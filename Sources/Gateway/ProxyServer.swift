import Config
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOExtras
import NIOHTTP1
import NIOHTTP2
import NIOPosix
import NIOSSL

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// The proxy's listener: accepts client connections and gives each its pipeline: plain
/// HTTP/1.1, or TLS with ALPN choosing HTTP/2 (every stream its own `ProxyHandler`) or HTTP/1.1
/// (the only protocol upgrades use).
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
    /// - Parameter tls: serve HTTPS with the store's current certificate; nil serves plain HTTP.
    public static func start(
        address: ListenAddress, group: any EventLoopGroup, gateway: GatewayContext,
        tls: ServingCertificateStore? = nil
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
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childKeepAlive(periodSeconds: TCPKeepAlive.clientPeriodSeconds)
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .childChannelOption(.maxMessagesPerRead, value: 16)
            .childChannelInitializer { channel in
                guard let tls else {
                    return channel.eventLoop.makeCompletedFuture {
                        try configureHTTPPipeline(channel.pipeline.syncOperations, gateway: gateway)
                    }
                }
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls.context))
                    try channel.pipeline.syncOperations.addHandler(TLSCloseCompletion())
                    try channel.pipeline.syncOperations.addHandler(
                        HandshakeTimeout(timeout: gateway.requestHeadTimeout))
                    try channel.pipeline.syncOperations.addHandler(TLSWriteCoalescer())
                }.flatMap {
                    channel.configureHTTP2SecureUpgrade(
                        h2ChannelConfigurator: { channel in
                            channel.eventLoop.makeCompletedFuture {
                                try configureHTTP2Pipeline(channel, gateway: gateway)
                            }
                        },
                        http1ChannelConfigurator: { channel in
                            channel.eventLoop.makeCompletedFuture {
                                try configureHTTPPipeline(channel.pipeline.syncOperations, gateway: gateway)
                            }
                        })
                }
            }
        let channel = try await bootstrap.bind(listening: address)
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
        // No pipelining assistance: `ProxyHandler` queues pipelined requests itself, without
        // stopping and restarting the socket's reads around every response.
        try pipeline.configureHTTPServerPipeline(
            withPipeliningAssistance: false, withErrorHandling: false, withOutboundHeaderValidation: true,
            withEncoderConfiguration: .init(), withDecoderLimitConfiguration: limits)
        try pipeline.addHandler(ProtocolErrorHandler())
        try pipeline.addHandler(ProxyHandler(gateway: gateway, clientSplice: splice))
    }

    /// NIO's settings, but with the header list an HTTP/1.1 request may have (NIO's default is
    /// 16 KiB: a token with many groups was refused over HTTP/2 only). NIO applies them when the
    /// client acknowledges them, which `EarlySettingsAcknowledgement` does for it at once, so a
    /// connection's first request has the larger limit too.
    static var http2Configuration: NIOHTTP2Handler.ConnectionConfiguration {
        var configuration = NIOHTTP2Handler.ConnectionConfiguration()
        // Requests are checked by `HTTP2StreamsHandler.requestHead` (`HTTP2FieldRules`), the
        // same rules at a tenth of the cost. This also turns off NIO's check of the response
        // blocks the proxy sends: they are built from heads that NIO's HTTP/1.1 parser (no
        // lenient flags) or its HTTP/2 client (with the check on) has taken apart field by
        // field, or from the proxy's own constant fields.
        configuration.headerBlockValidation = .disabled
        configuration.initialSettings = nioDefaultSettings.map { setting in
            setting.parameter == .maxHeaderListSize
                ? HTTP2Setting(parameter: .maxHeaderListSize, value: maximumHeaderBytes) : setting
        }
        return configuration
    }

    /// HTTP/2: `HTTP2StreamsHandler` serves each stream with its own `ProxyHandler`, so every
    /// check and header rule is the same as over HTTP/1.1; flow control is per stream.
    static func configureHTTP2Pipeline(_ channel: any Channel, gateway: GatewayContext) throws {
        let pipeline = channel.pipeline.syncOperations
        let streams = HTTP2StreamsHandler(gateway: gateway)
        try pipeline.addHandler(EarlySettingsAcknowledgement())
        try pipeline.addHandler(
            NIOHTTP2Handler(
                mode: .server, frameDelegate: streams.writtenFrames, connectionConfiguration: http2Configuration))
        try pipeline.addHandler(streams)
        try pipeline.addHandler(CloseOnInputClosed())
    }

    /// Stops accepting connections; open ones continue.
    public func stopAccepting() async {
        try? await channel.close()
    }

    /// Graceful shutdown: stops accepting, closes idle connections, lets each request in flight
    /// finish and then closes its connection; upgraded sessions run on until they end. Returns
    /// when every connection is closed, or when `deadline` passes (true: all drained), whichever
    /// comes first: a watch or an exec session may outlive any deadline, so nothing waits for
    /// the connections once it has passed.
    public func drain(deadline: Duration) async -> Bool {
        let drained = channel.eventLoop.makePromise(of: Void.self)
        quiescing.initiateShutdown(promise: drained)
        return await completes(drained.futureResult, within: deadline)
    }

    /// After a drain that ran out of time: closes every client connection still open (watches,
    /// upgraded sessions), so that each request on them ends as one whose client went away
    /// ends, with its access-log line, and waits up to `wait` for them to close. Returns how
    /// many it closed, and whether all of them closed in time.
    public func closeRemaining(wait: Duration) async -> (count: Int, closed: Bool) {
        let closing = limiter.closeAll()
        guard !closing.isEmpty else { return (0, true) }
        let closed = await completes(EventLoopFuture.andAllComplete(closing, on: channel.eventLoop), within: wait)
        return (closing.count, closed)
    }

    /// Whether `future` succeeds within `limit`; answers at whichever comes first.
    private func completes(_ future: EventLoopFuture<Void>, within limit: Duration) async -> Bool {
        let loop = channel.eventLoop
        let outcome = loop.makePromise(of: Bool.self)
        // The first of the two callbacks answers.
        let answered = NIOLockedValueBox(false)
        let answer: @Sendable (Bool) -> Void = { inTime in
            let first = answered.withLockedValue { wasAnswered in
                defer { wasAnswered = true }
                return !wasAnswered
            }
            guard first else { return }
            outcome.succeed(inTime)
        }
        let timer = loop.scheduleTask(in: TimeAmount(limit)) { answer(false) }
        future.whenComplete { result in
            timer.cancel()
            answer((try? result.get()) != nil)
        }
        return (try? await outcome.futureResult.get()) ?? false
    }
}

/// Closes an HTTP/2 connection whose client stopped sending. Half-closure is allowed on the
/// listener for upgraded HTTP/1.1 sessions; an HTTP/2 connection has no use for it, and without
/// this a vanished client's connection would linger.
final class CloseOnInputClosed: ChannelInboundHandler, Sendable {
    typealias InboundIn = Any

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, case .inputClosed = event {
            // Frames written in this round of I/O wait for a flush (`RoundFlush`) that a close
            // would drop.
            context.flush()
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }
}

extension ServerBootstrap {
    /// Binds `address`. An empty host binds every interface: IPv6 and IPv4, falling back to IPv4
    /// alone where IPv6 is unavailable. A host name binds the first IPv4 address it resolves
    /// to, else its first address, as Go's `net.Listen` does: in a pod `localhost` resolves to
    /// `::1` first, and clients of `localhost:8080` (or of the seed's Go binary) reach
    /// 127.0.0.1.
    func bind(listening address: ListenAddress) async throws -> any Channel {
        guard address.host.isEmpty else {
            let resolved = try Self.resolveForListening(address.host, port: address.port)
            return try await bind(to: resolved).get()
        }
        do {
            return try await bind(host: "::", port: address.port).get()
        } catch {
            return try await bind(host: "0.0.0.0", port: address.port).get()
        }
    }

    static func resolveForListening(_ host: String, port: Int) throws -> SocketAddress {
        if let literal = try? SocketAddress(ipAddress: host, port: port) { return literal }
        var hints = addrinfo()
        #if canImport(Glibc)
            hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        #else
            hints.ai_socktype = SOCK_STREAM
        #endif
        var list: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, String(port), &hints, &list) == 0, let list else {
            return try SocketAddress.makeAddressResolvingHost(host, port: port)
        }
        defer { freeaddrinfo(list) }
        var addresses: [SocketAddress] = []
        var entry: UnsafeMutablePointer<addrinfo>? = list
        while let current = entry {
            if let address = current.pointee.ai_addr {
                switch current.pointee.ai_family {
                case AF_INET:
                    address.withMemoryRebound(to: sockaddr_in.self, capacity: 1) {
                        addresses.append(SocketAddress($0.pointee, host: host))
                    }
                case AF_INET6:
                    address.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) {
                        addresses.append(SocketAddress($0.pointee, host: host))
                    }
                default: break
                }
            }
            entry = current.pointee.ai_next
        }
        guard let chosen = preferredListeningAddress(addresses) else {
            return try SocketAddress.makeAddressResolvingHost(host, port: port)
        }
        return chosen
    }

    /// Go's choice among a host name's addresses for a listener: the first IPv4, else the first.
    static func preferredListeningAddress(_ addresses: [SocketAddress]) -> SocketAddress? {
        addresses.first { if case .v4 = $0 { return true } else { return false } } ?? addresses.first
    }
}

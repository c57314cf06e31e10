import Config
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

/// Keep-alive connections to the API server, one pool per event loop so that a client
/// connection and its upstream connection always share a thread and never hop.
public final class UpstreamConnectionPool: Sendable {
    private let pools: [ObjectIdentifier: NIOLoopBoundBox<LoopPool>]
    let credentials: UpstreamCredentials

    public init(group: any EventLoopGroup, credentials: UpstreamCredentials, connectTimeout: TimeAmount = .seconds(10))
    {
        var pools: [ObjectIdentifier: NIOLoopBoundBox<LoopPool>] = [:]
        for loop in group.makeIterator() {
            pools[ObjectIdentifier(loop)] = NIOLoopBoundBox.makeBoxSendingValue(
                LoopPool(eventLoop: loop, credentials: credentials, connectTimeout: connectTimeout), eventLoop: loop)
        }
        self.pools = pools
        self.credentials = credentials
    }

    /// The pool of `eventLoop`; must be called on it.
    func pool(for eventLoop: any EventLoop) -> LoopPool {
        guard let box = pools[ObjectIdentifier(eventLoop)] else {
            preconditionFailure("event loop \(eventLoop) does not belong to the proxy's group")
        }
        return box.value
    }

    /// Closes every idle connection.
    public func closeIdleConnections() {
        for box in pools.values {
            box.eventLoop.execute { box.value.closeAll() }
        }
    }
}

/// An upstream connection: its channel and the handler that reports its responses.
final class UpstreamConnection {
    let channel: any Channel
    let handler: UpstreamHandler

    init(channel: any Channel, handler: UpstreamHandler) {
        self.channel = channel
        self.handler = handler
    }
}

/// One event loop's idle connections. Only touched on that loop.
final class LoopPool {
    static let maximumIdle = 64

    let eventLoop: any EventLoop
    private let credentials: UpstreamCredentials
    private let connectTimeout: TimeAmount
    private var idle: [UpstreamConnection] = []

    init(eventLoop: any EventLoop, credentials: UpstreamCredentials, connectTimeout: TimeAmount) {
        self.eventLoop = eventLoop
        self.credentials = credentials
        self.connectTimeout = connectTimeout
    }

    /// The most recently used idle connection, or nil when none is open.
    func takeIdle() -> UpstreamConnection? {
        while let connection = idle.popLast() {
            connection.handler.onIdleClose = nil
            if connection.channel.isActive { return connection }
        }
        return nil
    }

    /// Returns a connection whose last exchange completed cleanly, for the next request.
    func release(_ connection: UpstreamConnection) {
        connection.handler.delegate = nil
        guard connection.channel.isActive, connection.handler.responseKeepAlive, idle.count < Self.maximumIdle else {
            connection.handler.close()
            return
        }
        connection.handler.onIdleClose = { [weak self, weak connection] in
            guard let self, let connection else { return }
            self.idle.removeAll { $0 === connection }
        }
        idle.append(connection)
    }

    func closeAll() {
        let connections = idle
        idle.removeAll()
        for connection in connections { connection.handler.close() }
    }

    /// Opens a new TLS connection to the API server.
    func connect() -> EventLoopFuture<UpstreamConnection> {
        let credentials = self.credentials
        let configuration = credentials.configuration
        return ClientBootstrap(group: eventLoop)
            .connectTimeout(connectTimeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .keepAlive(periodSeconds: TCPKeepAlive.upstreamPeriodSeconds)
            .channelOption(.allowRemoteHalfClosure, value: true)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let tls = try NIOSSLClientHandler(
                        context: credentials.sslContext, serverHostname: credentials.serverHostname)
                    try channel.pipeline.syncOperations.addHandler(tls)
                    try channel.pipeline.syncOperations.addHTTPClientHandlers(leftOverBytesStrategy: .forwardBytes)
                    try channel.pipeline.syncOperations.addHandler(UpstreamHandler())
                }
            }
            .connect(host: configuration.host, port: configuration.port)
            .flatMapThrowing { channel in
                let handler = try channel.pipeline.syncOperations.handler(type: UpstreamHandler.self)
                return UpstreamConnection(channel: channel, handler: handler)
            }
    }
}

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

    /// Stops reusing the connections open now (after the proxy's client certificate changed):
    /// idle ones close, HTTP/2 ones take no new streams and close when their last ends.
    /// Requests under way, watches and upgraded sessions included, run on. Returns once every
    /// event loop has done so.
    public func retireConnections() async {
        for box in pools.values {
            try? await box.eventLoop.submit { box.value.retireAll() }.get()
        }
    }
}

/// An upstream connection, or one HTTP/2 stream of one: its channel and the handler that
/// reports its responses.
final class UpstreamConnection {
    let channel: any Channel
    let handler: UpstreamHandler
    /// A stream of a `MultiplexedUpstream`: it carries one request and closes.
    let isStream: Bool
    /// The pool's generation when the connection was opened: one from before the pool retired
    /// its connections is not reused.
    var generation = 0

    init(channel: any Channel, handler: UpstreamHandler, isStream: Bool = false) {
        self.channel = channel
        self.handler = handler
        self.isStream = isStream
    }
}

/// One event loop's idle connections. Only touched on that loop.
final class LoopPool {
    static let maximumIdle = 64

    let eventLoop: any EventLoop
    private let credentials: UpstreamCredentials
    private let connectTimeout: TimeAmount
    private var idle: [UpstreamConnection] = []
    /// Counts `retireAll` calls: connections opened before the latest are not reused.
    private var generation = 0
    /// HTTP/2 connections carrying long-running requests as streams.
    private var multiplexed: [MultiplexedUpstream] = []
    /// Completed when the HTTP/2 connection being opened is ready (or the attempt failed):
    /// long-running requests arriving meanwhile wait for it rather than open one each.
    private var multiplexedOpening: EventLoopFuture<Void>?
    /// When the API server last chose HTTP/1.1 by ALPN; it is asked again after a while.
    private var http2DeclinedAt: NIODeadline?
    static let http2RetryInterval = TimeAmount.minutes(10)

    init(eventLoop: any EventLoop, credentials: UpstreamCredentials, connectTimeout: TimeAmount) {
        self.eventLoop = eventLoop
        self.credentials = credentials
        self.connectTimeout = connectTimeout
    }

    /// The most recently used idle connection, or nil when none is open.
    func takeIdle() -> UpstreamConnection? {
        while let connection = idle.popLast() {
            if connection.channel.isActive { return connection }
        }
        return nil
    }

    /// Returns a connection whose last exchange completed cleanly, for the next request.
    func release(_ connection: UpstreamConnection) {
        connection.handler.delegate = nil
        if connection.isStream {
            // NIO reports the response's end before it closes the stream itself; closing it
            // here would reset a stream that has ended. One that is still open next time round
            // (the request's body unfinished) is reset.
            eventLoop.assumeIsolated().execute {
                if connection.channel.isActive { connection.handler.close() }
            }
            return
        }
        guard connection.channel.isActive, connection.handler.responseKeepAlive, connection.generation == generation,
            idle.count < Self.maximumIdle
        else {
            connection.handler.close()
            return
        }
        if connection.handler.onIdleClose == nil {
            // Set once per connection, not at every release: while the connection is in use it
            // is not in `idle`, and removing it finds nothing.
            connection.handler.onIdleClose = { [weak self, weak connection] in
                guard let self, let connection else { return }
                self.idle.removeAll { $0 === connection }
            }
        }
        idle.append(connection)
    }

    func closeAll() {
        let connections = idle
        idle.removeAll()
        for connection in connections { connection.handler.close() }
        for connection in multiplexed where connection.openStreams == 0 { connection.channel.close(promise: nil) }
    }

    /// `closeAll`, and no new streams on the HTTP/2 connections still in use: each closes when
    /// its last stream ends (`adopt`'s `onStreamClosed`).
    func retireAll() {
        generation += 1
        for connection in multiplexed { connection.goingAway = true }
        closeAll()
    }

    /// The API server chose HTTP/1.1 lately: long-running requests use HTTP/1.1 connections.
    var http2Declined: Bool {
        guard let declined = http2DeclinedAt else { return false }
        return .now() - declined < Self.http2RetryInterval
    }

    /// A connection for a long-running request: a stream of an HTTP/2 connection to the API
    /// server (opening one when none has room), or, when the server declines HTTP/2, a new
    /// HTTP/1.1 connection.
    func connectLongRunning() -> EventLoopFuture<UpstreamConnection> {
        if http2Declined { return connect() }
        if let connection = multiplexed.first(where: \.hasRoom) {
            return connection.openStream()
        }
        let promise = eventLoop.makePromise(of: UpstreamConnection.self)
        let answer: (Result<UpstreamConnection, any Error>) -> Void = { promise.assumeIsolated().completeWith($0) }
        if let opening = multiplexedOpening {
            opening.assumeIsolated().whenComplete { result in
                switch result {
                case .success: self.connectLongRunning().assumeIsolated().whenComplete(answer)
                case .failure(let error): promise.fail(error)
                }
            }
            return promise.futureResult
        }
        // Requests arriving while this connection opens wait for it (`ready`), then take
        // their streams on it, before this one's.
        let ready = eventLoop.makePromise(of: Void.self)
        multiplexedOpening = ready.futureResult
        let generation = self.generation
        connectNegotiating().assumeIsolated().whenComplete { result in
            self.multiplexedOpening = nil
            switch result {
            case .success(.http2(let connection)) where connection.maximumStreams == 0:
                // A server that allows no streams is not one to send watches to.
                connection.channel.close(promise: nil)
                self.http2DeclinedAt = .now()
                ready.succeed()
                self.connect().assumeIsolated().whenComplete(answer)
            case .success(.http2(let connection)) where generation != self.generation:
                // Opened with the client certificate that was retired meanwhile.
                connection.channel.close(promise: nil)
                ready.succeed()
                self.connectLongRunning().assumeIsolated().whenComplete(answer)
            case .success(.http2(let connection)):
                self.adopt(connection)
                // The requests that waited for this connection take their streams first; this
                // one then goes where there is room, on this connection or another.
                ready.succeed()
                self.connectLongRunning().assumeIsolated().whenComplete(answer)
            case .success(.http1(let connection)):
                connection.generation = generation
                self.http2DeclinedAt = .now()
                ready.succeed()
                promise.assumeIsolated().succeed(connection)
            case .failure(let error):
                ready.fail(error)
                promise.fail(error)
            }
        }
        return promise.futureResult
    }

    /// Tracks an HTTP/2 connection until it closes; one left without streams closes when
    /// another has room, so that a burst of watches does not keep its connections for good.
    private func adopt(_ connection: MultiplexedUpstream) {
        multiplexed.append(connection)
        connection.onStreamClosed = { [weak self, weak connection] in
            guard let self, let connection, connection.openStreams == 0 else { return }
            if connection.goingAway || self.multiplexed.contains(where: { $0 !== connection && $0.hasRoom }) {
                connection.channel.close(promise: nil)
            }
        }
        connection.channel.closeFuture.assumeIsolated().whenComplete { [weak self] _ in
            self?.multiplexed.removeAll { $0 === connection }
        }
    }

    /// Opens a TLS connection offering HTTP/2 and HTTP/1.1; its pipeline is built for the one
    /// the API server chooses.
    private func connectNegotiating() -> EventLoopFuture<NegotiatedUpstream> {
        let negotiated = eventLoop.makePromise(of: NegotiatedUpstream.self)
        let connectTimeout = self.connectTimeout
        connect(tls: credentials.multiplexingSSLContext) { pipeline in
            try pipeline.addHandler(UpstreamProtocolNegotiation(negotiated: negotiated))
        }.whenComplete { result in
            switch result {
            case .success(let channel):
                // Nothing else bounds the handshake and the server's preface: every watch of
                // this event loop waits for them, so a server that accepts and never answers
                // fails them in the connect timeout, as an unanswered request would.
                let timeout = channel.eventLoop.scheduleTask(in: connectTimeout) {
                    negotiated.fail(UpstreamFailure.timedOut)
                    channel.close(promise: nil)
                }
                negotiated.futureResult.whenComplete { _ in timeout.cancel() }
            case .failure(let error):
                negotiated.fail(error)
            }
        }
        return negotiated.futureResult
    }

    /// Opens a new HTTP/1.1 TLS connection to the API server.
    func connect() -> EventLoopFuture<UpstreamConnection> {
        let generation = self.generation
        return connect(tls: credentials.sslContext) { pipeline in
            _ = try Self.addHTTP1Handlers(pipeline)
        }.flatMapThrowing { channel in
            let handler = try channel.pipeline.syncOperations.handler(type: UpstreamHandler.self)
            let connection = UpstreamConnection(channel: channel, handler: handler)
            connection.generation = generation
            return connection
        }
    }

    /// The handlers of an HTTP/1.1 connection to the API server, after TLS: what `connect`
    /// builds, and what a connection offering HTTP/2 gets when the server chooses HTTP/1.1.
    /// Informational answers (`100 Continue`) are decoded, not dropped: the client may be
    /// waiting for one. The handlers and their order are `addHTTPClientHandlers`' (the decoder
    /// sees the request heads it needs to frame a HEAD's answer).
    static func addHTTP1Handlers(_ pipeline: ChannelPipeline.SynchronousOperations) throws -> UpstreamHandler {
        let decoder = HTTPResponseDecoder(leftOverBytesStrategy: .forwardBytes, informationalResponseStrategy: .forward)
        try pipeline.addHandlers([
            HTTPRequestEncoder(), ByteToMessageHandler(decoder), NIOHTTPRequestHeadersValidator(),
        ])
        let handler = UpstreamHandler()
        try pipeline.addHandler(handler)
        return handler
    }

    /// Connects to the API server with `tls`; `configure` adds the handlers after TLS.
    private func connect(
        tls context: NIOSSLContext,
        _ configure: @escaping @Sendable (ChannelPipeline.SynchronousOperations) throws -> Void
    ) -> EventLoopFuture<any Channel> {
        let credentials = self.credentials
        let configuration = credentials.configuration
        return ClientBootstrap(group: eventLoop)
            .connectTimeout(connectTimeout)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .keepAlive(periodSeconds: TCPKeepAlive.upstreamPeriodSeconds)
            .channelOption(.allowRemoteHalfClosure, value: true)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let tls = try NIOSSLClientHandler(context: context, serverHostname: credentials.serverHostname)
                    try channel.pipeline.syncOperations.addHandler(tls)
                    try channel.pipeline.syncOperations.addHandler(TLSCloseCompletion())
                    try configure(channel.pipeline.syncOperations)
                }
            }
            .connect(host: configuration.host, port: configuration.port)
    }
}

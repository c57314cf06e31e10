import NIOCore
import NIOHTTP1
import NIOHTTP2
import NIOSSL
import NIOTLS

/// An HTTP/2 connection to the API server that carries long-running requests (watches,
/// `logs -f`) as streams of one TLS connection. Over HTTP/1.1 every open watch holds a TLS
/// connection of its own, and that connection is most of a held watch's memory in the proxy;
/// kube-apiserver speaks HTTP/2 (client-go uses it for everything), so thousands of watches
/// share a few connections instead. Ordinary requests stay on the HTTP/1.1 pool, which costs
/// less per request. Only touched on its event loop.
final class MultiplexedUpstream {
    /// When the server's SETTINGS do not say: NIO's own limit then (Go's server says 250, and
    /// kube-apiserver what its `--http2-max-streams-per-connection` sets).
    static let assumedMaximumStreams = 100

    let channel: any Channel
    private let multiplexer: NIOHTTP2Handler.StreamMultiplexer
    /// Streams opened here whose channel has not closed yet.
    private(set) var openStreams = 0
    /// The server's SETTINGS_MAX_CONCURRENT_STREAMS. A stream beyond it would wait, inside
    /// NIO, for another to end: for watches, possibly forever, so none is opened beyond it.
    var maximumStreams = MultiplexedUpstream.assumedMaximumStreams
    /// The server sent GOAWAY, or the pool retired the connection (a new client certificate):
    /// the streams it accepted run to their end; new ones go elsewhere.
    var goingAway = false
    /// Called on the event loop each time a stream's channel closes.
    var onStreamClosed: (() -> Void)?

    init(channel: any Channel, multiplexer: NIOHTTP2Handler.StreamMultiplexer) {
        self.channel = channel
        self.multiplexer = multiplexer
    }

    var hasRoom: Bool { channel.isActive && !goingAway && openStreams < maximumStreams }

    /// Opens a stream whose pipeline speaks HTTP/1-style parts to an `UpstreamHandler`, like a
    /// pooled connection's.
    func openStream() -> EventLoopFuture<UpstreamConnection> {
        openStreams += 1
        let promise = channel.eventLoop.makePromise(of: (any Channel).self)
        multiplexer.createStreamChannel(promise: promise) { stream in
            stream.eventLoop.makeCompletedFuture {
                let pipeline = stream.pipeline.syncOperations
                try pipeline.addHandler(HTTP2FramePayloadToHTTP1ClientCodec(httpProtocol: .https))
                try pipeline.addHandler(UpstreamHandler())
            }
        }
        let opened = promise.futureResult.assumeIsolated()
        opened.whenComplete { result in
            switch result {
            case .success(let stream):
                stream.closeFuture.assumeIsolated().whenComplete { _ in self.streamClosed() }
            case .failure:
                self.streamClosed()
            }
        }
        return opened.flatMapThrowing { stream in
            let handler = try stream.pipeline.syncOperations.handler(type: UpstreamHandler.self)
            return UpstreamConnection(channel: stream, handler: handler, isStream: true)
        }.nonisolated()
    }

    private func streamClosed() {
        openStreams -= 1
        onStreamClosed?()
    }

    /// How much of a stream's response the API server may send ahead of the proxy reading it:
    /// kube-apiserver's own receive window per stream (256 KiB, its 99th percentile of a
    /// request body). It bounds what a stream whose client reads slowly holds here. HTTP/2's
    /// default, 64 KiB, capped every watch and `logs -f` at 64 KiB per round trip to the API
    /// server.
    static let streamWindowBytes = 256 * 1024

    /// The connection's window, as kube-apiserver sizes its own: the stream window times 100
    /// streams (its default stream limit). NIO opens it again as frames arrive, whether or
    /// not their streams read them, so it limits only what is in flight. HTTP/2's default
    /// (64 KiB) was shared by every stream of the connection.
    static let connectionWindowBytes = streamWindowBytes * 100

    /// The settings this side announces: no server push, response heads as large as the
    /// HTTP/1.1 decoder takes, and the stream window. NIO remembers the streams it reset so
    /// that frames still on the way for them are dropped; past that many, such a frame is a
    /// connection error that ends every watch on the connection, and this proxy resets a
    /// stream for every client that leaves its watch, so it remembers as many as any server's
    /// stream limit.
    static var connectionConfiguration: NIOHTTP2Handler.ConnectionConfiguration {
        var configuration = NIOHTTP2Handler.ConnectionConfiguration()
        configuration.initialSettings = [
            HTTP2Setting(parameter: .enablePush, value: 0),
            HTTP2Setting(parameter: .maxConcurrentStreams, value: 0),
            HTTP2Setting(parameter: .maxHeaderListSize, value: ProxyServer.maximumHeaderBytes),
            HTTP2Setting(parameter: .initialWindowSize, value: streamWindowBytes),
        ]
        configuration.targetWindowSize = connectionWindowBytes
        configuration.maximumRecentlyResetStreams = 4096
        return configuration
    }

    /// Each stream keeps its window at `streamWindowBytes` as the proxy reads.
    static var streamConfiguration: NIOHTTP2Handler.StreamConfiguration {
        var configuration = NIOHTTP2Handler.StreamConfiguration()
        configuration.targetWindowSize = streamWindowBytes
        return configuration
    }
}

/// What an upstream connection became once its TLS handshake said which protocol the API
/// server chose (and, for HTTP/2, once its first SETTINGS said how many streams it allows).
enum NegotiatedUpstream {
    case http2(MultiplexedUpstream)
    case http1(UpstreamConnection)
}

/// Builds an upstream connection's pipeline once ALPN has chosen: HTTP/2 with a multiplexer, or
/// the ordinary HTTP/1.1 handlers for a server that declined HTTP/2. Fails `negotiated` if the
/// handshake fails or the connection closes first.
final class UpstreamProtocolNegotiation: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny

    private let negotiated: EventLoopPromise<NegotiatedUpstream>
    /// HTTP/2 was chosen: `negotiated` is now the `MultiplexedUpstreamHandler`'s to complete.
    private var handedOver = false

    init(negotiated: EventLoopPromise<NegotiatedUpstream>) {
        self.negotiated = negotiated
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard let event = event as? TLSUserEvent, case .handshakeCompleted(let chosen) = event else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        do {
            let pipeline = context.pipeline.syncOperations
            if chosen == "h2" {
                let multiplexer = try pipeline.configureHTTP2Pipeline(
                    mode: .client, connectionConfiguration: MultiplexedUpstream.connectionConfiguration,
                    streamConfiguration: MultiplexedUpstream.streamConfiguration,
                    inboundStreamInitializer: { stream in stream.close() })
                let connection = MultiplexedUpstream(channel: context.channel, multiplexer: multiplexer)
                try pipeline.addHandler(MultiplexedUpstreamHandler(connection: connection, negotiated: negotiated))
                handedOver = true
            } else {
                let handler = try LoopPool.addHTTP1Handlers(pipeline)
                negotiated.assumeIsolated().succeed(
                    .http1(UpstreamConnection(channel: context.channel, handler: handler)))
            }
            pipeline.removeHandler(context: context, promise: nil)
        } catch {
            negotiated.fail(error)
            context.close(promise: nil)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        negotiated.fail(UpstreamFailure(classifying: error))
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        negotiated.fail(UpstreamFailure.closedEarly)
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        // A no-op once the promise is completed; otherwise the connection never got that far.
        if !handedOver { negotiated.fail(UpstreamFailure.closedEarly) }
    }
}

/// Follows an HTTP/2 upstream connection's own frames. The server's first SETTINGS frame (its
/// preface) completes the negotiation, so that no stream is opened before its limit is known;
/// later ones may change the limit; after GOAWAY no new stream starts on the connection.
final class MultiplexedUpstreamHandler: ChannelInboundHandler {
    typealias InboundIn = HTTP2Frame

    /// Held until the preface has arrived, then the pool's.
    private var pending: MultiplexedUpstream?
    private weak var connection: MultiplexedUpstream?
    private var negotiated: EventLoopPromise<NegotiatedUpstream>?

    init(connection: MultiplexedUpstream, negotiated: EventLoopPromise<NegotiatedUpstream>) {
        self.pending = connection
        self.connection = connection
        self.negotiated = negotiated
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data).payload {
        case .settings(.settings(let settings)):
            for setting in settings where setting.parameter == .maxConcurrentStreams {
                connection?.maximumStreams = setting.value
            }
            if let negotiated, let pending {
                self.negotiated = nil
                self.pending = nil
                negotiated.assumeIsolated().succeed(.http2(pending))
            }
        case .goAway:
            connection?.goingAway = true
            if connection?.openStreams == 0 { context.close(promise: nil) }
        default:
            break
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        // The server stopped sending: nothing more can arrive on any stream.
        if let event = event as? ChannelEvent, case .inputClosed = event {
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    /// NIO reports a single stream's error here too, after resetting that stream: that is no
    /// reason to end the connection's other watches. The connection takes no new streams and
    /// closes once its last one ends; the socket or TLS failing closes it at once.
    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let negotiated {
            self.negotiated = nil
            pending = nil
            negotiated.fail(UpstreamFailure(classifying: error))
            context.close(promise: nil)
            return
        }
        connection?.goingAway = true
        switch error {
        case is IOError, is NIOSSLError, is BoringSSLError:
            context.close(promise: nil)
        default:
            if connection?.openStreams ?? 0 == 0 { context.close(promise: nil) }
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let negotiated {
            self.negotiated = nil
            pending = nil
            negotiated.fail(UpstreamFailure.closedEarly)
        }
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        negotiated?.fail(UpstreamFailure.closedEarly)
        negotiated = nil
        pending = nil
    }
}

extension ProxyHandler {
    /// Whether a request may stay open indefinitely: a watch (a `/watch/` path, or a `watch`
    /// parameter, which kube-apiserver takes as true unless it is `false` or `0`) or a followed
    /// log. These go to the API server as HTTP/2 streams where it offers HTTP/2.
    static func isLongRunning(_ head: HTTPRequestHead) -> Bool {
        guard head.method == .GET else { return false }
        // Walked over the target's contiguous bytes: every request passes here, and the same
        // walk over a `String.UTF8View` cost about 2 % of a request's instructions.
        var uri = head.uri
        return uri.withUTF8 { isLongRunning(target: $0[...]) }
    }

    private static func isLongRunning(target: Slice<UnsafeBufferPointer<UInt8>>) -> Bool {
        let question = target.firstIndex(of: UInt8(ascii: "?")) ?? target.endIndex
        let path = target[..<question]
        if isWatchPath(path) { return true }
        let isLog = path.reversed().starts(with: "gol/".utf8)
        // Every request passes here: the parameters are walked in place, not split into an array.
        var rest = target[question...].dropFirst()
        while !rest.isEmpty {
            let end = rest.firstIndex(of: UInt8(ascii: "&")) ?? rest.endIndex
            let parameter = rest[..<end]
            let name = parameter.prefix { $0 != UInt8(ascii: "=") }
            if name.elementsEqual("watch".utf8) || (isLog && name.elementsEqual("follow".utf8)) {
                let value = parameter.dropFirst(name.count + 1)
                if !value.elementsEqual("0".utf8) && !ASCIICaseInsensitive.equals(value, "false") { return true }
            }
            rest = rest[end...].dropFirst()
        }
        return false
    }

    /// `/api/v1/watch/...` or `/apis/<group>/<version>/watch/...`.
    private static func isWatchPath(_ path: Slice<UnsafeBufferPointer<UInt8>>) -> Bool {
        var rest = path.dropFirst()
        var segment = 0
        var watchSegment = -1
        while true {
            let end = rest.firstIndex(of: UInt8(ascii: "/")) ?? rest.endIndex
            let name = rest[..<end]
            if segment == 0 {
                if name.elementsEqual("api".utf8) {
                    watchSegment = 2
                } else if name.elementsEqual("apis".utf8) {
                    watchSegment = 3
                } else {
                    return false
                }
            } else if segment == watchSegment {
                return name.elementsEqual("watch".utf8)
            }
            guard end < rest.endIndex else { return false }
            rest = rest[end...].dropFirst()
            segment += 1
        }
    }
}

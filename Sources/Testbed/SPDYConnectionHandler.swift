import NIOCore

/// What a kubelet-side service (exec, port-forward) is told about the streams of its SPDY
/// connection. Every call comes on the connection's event loop.
protocol SPDYStreamService: AnyObject {
    /// The client opened `stream` (already answered with SYN_REPLY, as kubelet does for all).
    func opened(_ stream: UInt32, headers: [String: String], connection: SPDYConnectionHandler)
    func received(_ bytes: ByteBuffer, on stream: UInt32, connection: SPDYConnectionHandler)
    /// Nothing more comes from the client on `stream`: it sent FIN, or reset the stream.
    func remoteClosed(_ stream: UInt32, reset: Bool, connection: SPDYConnectionHandler)
    /// The connection is gone.
    func connectionEnded()
}

/// The server side of one SPDY/3.1 connection, the part kubelet gets from spdystream: answers
/// every stream the client opens, echoes the client's pings, hands stream events to a service
/// and lets it send data and finish or reset streams. Frames come from `SPDYFrameDecoder`.
final class SPDYConnectionHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = SPDYFrame
    typealias OutboundOut = ByteBuffer

    private let encoder: SPDYFrameEncoder
    private let service: any SPDYStreamService
    private var context: ChannelHandlerContext?
    private var lastClientStream: UInt32 = 0
    /// Streams this side has finished (FIN sent) or reset.
    private var closedByUs: Set<UInt32> = []

    init(service: any SPDYStreamService) throws {
        self.encoder = try SPDYFrameEncoder()
        self.service = service
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .synStream(let stream, let headers, let fin):
            lastClientStream = stream
            write(.synReply(stream: stream, headers: [], fin: false))
            let byName = Dictionary(headers.map { ($0.name, $0.value) }, uniquingKeysWith: { first, _ in first })
            service.opened(stream, headers: byName, connection: self)
            if fin { service.remoteClosed(stream, reset: false, connection: self) }
        case .data(let stream, let bytes, let fin):
            if bytes.readableBytes > 0 { service.received(bytes, on: stream, connection: self) }
            if fin { service.remoteClosed(stream, reset: false, connection: self) }
        case .rstStream(let stream, _):
            closedByUs.insert(stream)
            service.remoteClosed(stream, reset: true, connection: self)
        case .ping(let id):
            write(.ping(id: id))
        case .goAway:
            context.close(promise: nil)
        case .synReply, .headers, .settings, .windowUpdate:
            break
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        service.connectionEnded()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    var eventLoop: (any EventLoop)? { context?.eventLoop }

    /// Sends `bytes` on `stream` unless this side has already finished it.
    func send(_ bytes: ByteBuffer, on stream: UInt32) {
        guard !closedByUs.contains(stream) else { return }
        write(.data(stream: stream, bytes: bytes, fin: false))
    }

    func send(_ bytes: [UInt8], on stream: UInt32) {
        send(ByteBuffer(bytes: bytes), on: stream)
    }

    /// Half-closes `stream` from this side (an empty data frame with FIN), once.
    func finish(_ stream: UInt32) {
        guard closedByUs.insert(stream).inserted else { return }
        write(.data(stream: stream, bytes: ByteBuffer(), fin: true))
    }

    /// Says goodbye (GOAWAY) and closes the connection.
    func close() {
        write(.goAway(lastGoodStream: lastClientStream, status: 0))
        context?.close(promise: nil)
    }

    private func write(_ frame: SPDYFrame) {
        guard let context else { return }
        do {
            let bytes = try encoder.encode(frame, allocator: context.channel.allocator)
            context.writeAndFlush(wrapOutboundOut(bytes), promise: nil)
        } catch {
            context.close(promise: nil)
        }
    }
}

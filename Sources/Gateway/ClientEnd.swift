import NIOCore
import NIOHTTP1

/// Where a `ProxyHandler` sends its response and asks for more of the request: an HTTP/1.1
/// connection's pipeline, or one stream of an HTTP/2 connection.
///
/// Only used on `eventLoop`.
protocol ClientEnd: AnyObject {
    var eventLoop: any EventLoop { get }
    var allocator: ByteBufferAllocator { get }
    /// Whether response bytes can be taken now. When it turns true again the handler hears of
    /// it (`ProxyHandler.clientWritabilityChanged`).
    var isWritable: Bool { get }
    /// Completes when the client connection closes; nil on an HTTP/2 stream (nothing upgrades).
    var closeFuture: EventLoopFuture<Void>? { get }
    func write(_ part: HTTPServerResponsePart)
    func writeAndFlush(_ part: HTTPServerResponsePart)
    func flush()
    /// Ends the connection (or resets the stream, if its response is not complete).
    func close()
    /// Takes more request bytes: a socket read, or on a stream the flow-control window for them.
    func read()
    /// A timeout for this client's exchanges; `expired` runs on `eventLoop` when one passes.
    func makeDeadline(expired: @escaping () -> Void) -> any ExchangeDeadline
}

/// An HTTP/1.1 connection: the handler's place in its pipeline.
final class PipelineEnd: ClientEnd {
    private let context: ChannelHandlerContext
    private let roundFlush = RoundFlush()

    init(_ context: ChannelHandlerContext) {
        self.context = context
    }

    var eventLoop: any EventLoop { context.eventLoop }
    var allocator: ByteBufferAllocator { context.channel.allocator }
    var isWritable: Bool { context.channel.isWritable }
    var closeFuture: EventLoopFuture<Void>? { context.channel.closeFuture }

    func write(_ part: HTTPServerResponsePart) {
        context.write(NIOAny(part), promise: nil)
    }

    func writeAndFlush(_ part: HTTPServerResponsePart) {
        context.write(NIOAny(part), promise: nil)
        roundFlush.schedule(context)
    }

    func flush() {
        roundFlush.schedule(context)
    }

    func close() {
        roundFlush.flushNow(context)
        context.close(promise: nil)
    }

    func read() {
        context.read()
    }

    func makeDeadline(expired: @escaping () -> Void) -> any ExchangeDeadline {
        DeadlineTimer(eventLoop: context.eventLoop, expired: expired)
    }
}

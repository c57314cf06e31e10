import NIOCore

/// Joins the small writes between two flushes into one buffer before TLS sees them.
/// `NIOSSLHandler` makes every write its own TLS record (a header, a MAC, an encryption call
/// each), and a response is written in pieces: HTTP/1.1's head and body, or HTTP/2's HEADERS
/// frame, DATA frame header, DATA payload and the empty DATA frame that ends the stream. Copying
/// a kilobyte or two costs less than the records it saves.
///
/// Sits right behind the TLS handler. Writes that carry a promise, that are large, or that are
/// not bytes pass through unchanged, after whatever was joined before them, so the order holds.
final class TLSWriteCoalescer: ChannelOutboundHandler {
    typealias OutboundIn = IOData
    typealias OutboundOut = IOData

    /// At most one TLS record's worth is joined.
    static let limit = 16 * 1024

    /// The bytes written since the last flush: the one buffer written, or a buffer of our own
    /// that joins several (`joined`).
    private var pending: ByteBuffer?
    private var joined = false

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        guard promise == nil, case .byteBuffer(var bytes) = unwrapOutboundIn(data),
            bytes.readableBytes + (pending?.readableBytes ?? 0) <= Self.limit
        else {
            writePending(context: context)
            context.write(data, promise: promise)
            return
        }
        guard var current = pending else {
            // A lone write goes as it is, uncopied.
            pending = bytes
            return
        }
        pending = nil
        if !joined {
            let size = current.readableBytes + bytes.readableBytes
            var buffer = context.channel.allocator.buffer(capacity: min(Self.limit, max(2 * size, 1024)))
            buffer.writeBuffer(&current)
            current = buffer
            joined = true
        }
        current.writeBuffer(&bytes)
        pending = current
    }

    func flush(context: ChannelHandlerContext) {
        writePending(context: context)
        context.flush()
    }

    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        writePending(context: context)
        context.close(mode: mode, promise: promise)
    }

    private func writePending(context: ChannelHandlerContext) {
        guard let bytes = pending else { return }
        pending = nil
        joined = false
        context.write(wrapOutboundOut(.byteBuffer(bytes)), promise: nil)
    }
}

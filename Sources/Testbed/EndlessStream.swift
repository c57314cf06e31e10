import NIOCore
import NIOHTTP1

/// A response body that never ends, written one chunk at a time and only once the previous
/// chunk has reached the socket: a watch stream from an API server that always has more to
/// say. Because the next write waits for the last to complete, a reader that stops reading
/// stalls the writer (TCP backpressure), and `onWritten` stops being called: tests observe
/// through it whether backpressure reaches the API server.
enum EndlessStream {
    /// One watch event, repeated to fill each chunk.
    private static let event = Array(StandInAPIServer.chunk(event: "MODIFIED", name: "default").utf8)

    static func start(
        _ writer: ResponseWriter, chunkBytes: Int = 64 * 1024, onWritten: @escaping @Sendable (Int) -> Void
    ) {
        writer.head(.ok, headers: [("Content-Type", "application/json"), ("Transfer-Encoding", "chunked")])
        var chunk = writer.channel.allocator.buffer(capacity: chunkBytes)
        while chunk.readableBytes + event.count <= chunkBytes { chunk.writeBytes(event) }
        writeNext(chunk, on: writer.channel, onWritten: onWritten)
    }

    private static func writeNext(
        _ chunk: ByteBuffer, on channel: any Channel, onWritten: @escaping @Sendable (Int) -> Void
    ) {
        channel.writeAndFlush(HTTPServerResponsePart.body(.byteBuffer(chunk))).whenSuccess {
            onWritten(chunk.readableBytes)
            // The next write starts from the event loop, never from inside this completion:
            // a fast reader must not grow the stack.
            channel.eventLoop.execute { writeNext(chunk, on: channel, onWritten: onWritten) }
        }
    }
}

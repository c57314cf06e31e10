import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// Sends bytes exactly as given over a plain TCP connection and collects everything the server
/// sends back until it closes the connection (or `timeout` passes). For requests no HTTP
/// library would produce: byte-exact targets, smuggling attempts, oversized heads.
public enum RawHTTPClient {
    public struct Response: Sendable {
        public let bytes: [UInt8]
        public let closedByServer: Bool

        public init(bytes: [UInt8], closedByServer: Bool) {
            self.bytes = bytes
            self.closedByServer = closedByServer
        }

        public var text: String { String(decoding: bytes, as: UTF8.self) }

        /// The status code of the first response, or nil if none arrived.
        public var status: Int? {
            let line = text.prefix { $0 != "\r" && $0 != "\n" }
            let parts = line.split(separator: " ")
            return parts.count >= 2 ? Int(parts[1]) : nil
        }

        /// The body of the first response (everything after the blank line).
        public var body: String {
            let separator: [UInt8] = [13, 10, 13, 10]
            guard bytes.count >= 4,
                let start = (0...(bytes.count - 4)).first(where: { Array(bytes[$0..<$0 + 4]) == separator })
            else { return "" }
            return String(decoding: bytes[(start + 4)...], as: UTF8.self)
        }
    }

    public static func send(
        _ request: String, port: Int, host: String = "127.0.0.1", timeout: TimeAmount = .seconds(10)
    ) async throws -> Response {
        try await send(Array(request.utf8), port: port, host: host, timeout: timeout)
    }

    public static func send(
        _ request: [UInt8], port: Int, host: String = "127.0.0.1", timeout: TimeAmount = .seconds(10)
    ) async throws -> Response {
        let collected = NIOLockedValueBox<[UInt8]>([])
        let closed = NIOLockedValueBox(false)
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(Collector(collected: collected, closed: closed))
                }
            }
            .connect(host: host, port: port).get()
        var buffer = channel.allocator.buffer(capacity: request.count)
        buffer.writeBytes(request)
        try? await channel.writeAndFlush(buffer)
        let deadline = NIODeadline.now() + timeout
        while !closed.withLockedValue({ $0 }) && NIODeadline.now() < deadline {
            try await Task.sleep(for: .milliseconds(10))
        }
        let wasClosed = closed.withLockedValue { $0 }
        try? await channel.close()
        return Response(bytes: collected.withLockedValue { $0 }, closedByServer: wasClosed)
    }

    private final class Collector: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        let collected: NIOLockedValueBox<[UInt8]>
        let closed: NIOLockedValueBox<Bool>

        init(collected: NIOLockedValueBox<[UInt8]>, closed: NIOLockedValueBox<Bool>) {
            self.collected = collected
            self.closed = closed
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            var buffer = unwrapInboundIn(data)
            let bytes = buffer.readBytes(length: buffer.readableBytes) ?? []
            collected.withLockedValue { $0 += bytes }
        }

        func channelInactive(context: ChannelHandlerContext) {
            closed.withLockedValue { $0 = true }
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            context.close(promise: nil)
        }
    }
}

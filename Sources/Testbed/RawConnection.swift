import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// An interactive plain-TCP connection for tests that talk a protocol step by step:
/// send an upgrade request, wait for the 101, exchange raw bytes, half-close.
public final class RawConnection: Sendable {
    private let channel: any Channel
    private let received: NIOLockedValueBox<[UInt8]>
    private let closed: NIOLockedValueBox<Bool>

    private init(channel: any Channel, received: NIOLockedValueBox<[UInt8]>, closed: NIOLockedValueBox<Bool>) {
        self.channel = channel
        self.received = received
        self.closed = closed
    }

    public static func connect(port: Int, host: String = "127.0.0.1") async throws -> RawConnection {
        let received = NIOLockedValueBox<[UInt8]>([])
        let closed = NIOLockedValueBox(false)
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelOption(.allowRemoteHalfClosure, value: true)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(Recorder(received: received, closed: closed))
                }
            }
            .connect(host: host, port: port).get()
        return RawConnection(channel: channel, received: received, closed: closed)
    }

    public func send(_ text: String) async throws {
        try await send(Array(text.utf8))
    }

    public func send(_ bytes: [UInt8]) async throws {
        try await channel.writeAndFlush(channel.allocator.buffer(bytes: bytes))
    }

    /// Everything received so far, as text.
    public var text: String { String(decoding: received.withLockedValue { $0 }, as: UTF8.self) }

    public var byteCount: Int { received.withLockedValue { $0.count } }

    /// Whether the peer has finished sending (EOF read, or the connection closed).
    public var peerFinished: Bool { closed.withLockedValue { $0 } }

    /// Waits until what was received satisfies `condition`, or `timeout` passes (then returns false).
    @discardableResult
    public func wait(
        timeout: Duration = .seconds(10), until condition: @Sendable (RawConnection) -> Bool
    ) async throws -> Bool {
        let deadline = ContinuousClock.now + timeout
        while !condition(self) {
            if ContinuousClock.now >= deadline { return false }
            try await Task.sleep(for: .milliseconds(5))
        }
        return true
    }

    /// Half-closes: no more bytes from this side, the peer may still send.
    public func shutdownOutput() async throws {
        try await channel.close(mode: .output)
    }

    public func close() async {
        try? await channel.close()
    }

    private final class Recorder: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        let received: NIOLockedValueBox<[UInt8]>
        let closed: NIOLockedValueBox<Bool>

        init(received: NIOLockedValueBox<[UInt8]>, closed: NIOLockedValueBox<Bool>) {
            self.received = received
            self.closed = closed
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            var buffer = unwrapInboundIn(data)
            let bytes = buffer.readBytes(length: buffer.readableBytes) ?? []
            received.withLockedValue { $0 += bytes }
        }

        func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
            if let event = event as? ChannelEvent, case .inputClosed = event {
                closed.withLockedValue { $0 = true }
            }
        }

        func channelInactive(context: ChannelHandlerContext) {
            closed.withLockedValue { $0 = true }
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            context.close(promise: nil)
        }
    }
}

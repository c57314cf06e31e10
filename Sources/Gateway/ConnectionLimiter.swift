import NIOCore
import Synchronization

/// Sits on the listening channel and closes each accepted connection beyond `maximum` open at
/// once, before any byte of it is read: a flood of connections costs a refused socket each,
/// never unbounded memory.
final class ConnectionLimiter: ChannelInboundHandler, Sendable {
    typealias InboundIn = any Channel
    typealias InboundOut = any Channel

    private let maximum: Int
    private let open = Atomic<Int>(0)

    init(maximum: Int) {
        self.maximum = maximum
    }

    var openConnections: Int { open.load(ordering: .relaxed) }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let child = unwrapInboundIn(data)
        let count = open.add(1, ordering: .relaxed).newValue
        child.closeFuture.whenComplete { [self] _ in
            _ = open.subtract(1, ordering: .relaxed)
        }
        if count > maximum {
            child.close(promise: nil)
            return
        }
        context.fireChannelRead(data)
    }
}

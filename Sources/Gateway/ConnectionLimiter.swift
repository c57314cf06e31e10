import NIOCore
import Synchronization

/// Sits on the listening channel and closes each accepted connection beyond `maximum` open at
/// once, before any byte of it is read: a flood of connections costs a refused socket each,
/// never unbounded memory. Knows the connections open, so that a shutdown can close those left
/// when its drain deadline passes.
final class ConnectionLimiter: ChannelInboundHandler, Sendable {
    typealias InboundIn = any Channel
    typealias InboundOut = any Channel

    private let maximum: Int
    /// The connections accepted and not yet closed (those over the cap too, until their close
    /// completes); taken at accept and close only.
    private let open = Mutex<[ObjectIdentifier: any Channel]>([:])

    init(maximum: Int) {
        self.maximum = maximum
    }

    var openConnections: Int { open.withLock { $0.count } }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let child = unwrapInboundIn(data)
        let id = ObjectIdentifier(child)
        let count = open.withLock { open in
            open[id] = child
            return open.count
        }
        child.closeFuture.whenComplete { [self] _ in
            open.withLock { _ = $0.removeValue(forKey: id) }
        }
        if count > maximum {
            child.close(promise: nil)
            return
        }
        context.fireChannelRead(data)
    }

    /// Closes every connection still open and returns their close futures.
    func closeAll() -> [EventLoopFuture<Void>] {
        let channels = open.withLock { Array($0.values) }
        return channels.map { channel in
            channel.close(promise: nil)
            return channel.closeFuture
        }
    }
}

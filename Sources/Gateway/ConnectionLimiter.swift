import NIOCore
import Synchronization

/// Sits on the listening channel and closes each accepted connection beyond `maximum` open at
/// once, before any byte of it is read: a flood of connections costs a refused socket each,
/// never unbounded memory. Knows the connections it let through, so that a shutdown can close
/// those still open when its drain deadline passes.
final class ConnectionLimiter: ChannelInboundHandler, Sendable {
    typealias InboundIn = any Channel
    typealias InboundOut = any Channel

    private let maximum: Int
    private let open = Atomic<Int>(0)
    /// The connections let through and not yet closed (taken at accept and close only).
    private let admitted = Mutex<[ObjectIdentifier: any Channel]>([:])

    init(maximum: Int) {
        self.maximum = maximum
    }

    var openConnections: Int { open.load(ordering: .relaxed) }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let child = unwrapInboundIn(data)
        let count = open.add(1, ordering: .relaxed).newValue
        if count > maximum {
            child.closeFuture.whenComplete { [self] _ in
                _ = open.subtract(1, ordering: .relaxed)
            }
            child.close(promise: nil)
            return
        }
        let id = ObjectIdentifier(child)
        admitted.withLock { $0[id] = child }
        child.closeFuture.whenComplete { [self] _ in
            admitted.withLock { _ = $0.removeValue(forKey: id) }
            _ = open.subtract(1, ordering: .relaxed)
        }
        context.fireChannelRead(data)
    }

    /// Closes every connection still open and returns their close futures.
    func closeAdmitted() -> [EventLoopFuture<Void>] {
        let channels = admitted.withLock { Array($0.values) }
        return channels.map { channel in
            channel.close(promise: nil)
            return channel.closeFuture
        }
    }
}

import NIOCore
import NIOSSL

/// Ends a TLS connection the proxy closes as soon as the peer has answered the close.
///
/// The listener and the connections to the API server allow half-closure (for upgraded
/// sessions), and with it `NIOSSLHandler` does not finish a close it began when the peer
/// answers: the peer's `close_notify`, and then its FIN, reach the handlers behind TLS as an end
/// of input, and the connection stays open until TLS's shutdown timeout (5 s) runs out. Every
/// connection the proxy closed (an idle one, one answered `Connection: close`, those left at a
/// shutdown's deadline, an API server connection the pool let go) held its socket, and on the
/// listener its place under the connection cap, that long. Go's TLS closes at once after its
/// own `close_notify`.
///
/// Sits right behind the TLS handler. Once a close of the whole connection has begun, an end of
/// input closes the socket underneath TLS: both sides have said they are done. `NIOSSLHandler`
/// then still counts its close as unfinished: it fails the close's promise and reports
/// `uncleanShutdown` to the handlers behind it, which only close again. So no caller may take a
/// failed `close()` of such a connection for a failure.
final class TLSCloseCompletion: ChannelDuplexHandler {
    typealias InboundIn = NIOAny
    typealias OutboundIn = NIOAny

    private var closing = false

    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        if mode == .all { closing = true }
        context.close(mode: mode, promise: promise)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard closing, let event = event as? ChannelEvent, case .inputClosed = event else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        // Closed from TLS's own place in the pipeline, the close goes to the socket.
        let tls = try? context.pipeline.syncOperations.context(handlerType: NIOSSLHandler.self)
        tls?.close(promise: nil)
    }
}

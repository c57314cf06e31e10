import NIOCore
import NIOTLS

/// Closes a connection to the HTTPS listener whose TLS handshake has not completed within
/// `timeout` of its accept. Until the handshake completes, no HTTP handler (and so none of their
/// timeouts) is in the pipeline: without this, a client that connects and sends nothing, or
/// half a ClientHello, would hold its connection, and one of the listener's limited slots,
/// forever. Leaves the pipeline once the handshake completes.
final class HandshakeTimeout: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny

    private let timeout: TimeAmount
    private var task: Scheduled<Void>?

    init(timeout: TimeAmount) {
        self.timeout = timeout
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let channel = context.channel
        task = context.eventLoop.assumeIsolated().scheduleTask(in: timeout) {
            channel.close(promise: nil)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        task?.cancel()
        task = nil
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        context.fireUserInboundEventTriggered(event)
        if let event = event as? TLSUserEvent, case .handshakeCompleted = event {
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        }
    }
}

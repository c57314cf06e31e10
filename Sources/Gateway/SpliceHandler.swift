import NIOCore
import Synchronization

/// One end of a raw byte splice between a client connection and an upstream connection, used
/// once an upgrade (`kubectl exec`, `attach`, `cp`, `port-forward`) has been answered `101`.
///
/// Both ends live on the same event loop, so partners call each other directly. Bytes read on
/// one side are written to the other and flushed at the end of each read burst; a side whose
/// partner cannot take more bytes stops reading (backpressure by writability). A read EOF is
/// passed on as a half-close of the partner's output; a close or error closes both.
///
/// On the client side the handler sits at the front of the HTTP pipeline from the start and
/// passes everything through until `activate` — so the HTTP handlers behind it never need to
/// be taken apart, and no byte is parsed as HTTP after the switch.
final class SpliceHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private var partner: SpliceHandler?
    private var context: ChannelHandlerContext?
    private var readPending = false
    /// Bytes that arrived before the partner was linked (leftovers forwarded by a decoder).
    private var early: [ByteBuffer] = []
    private(set) var isActive = false
    /// Set on the client end before `activate`: the session closes after this long with no
    /// bytes read on either end. nil: never for being quiet.
    var idleTimeout: TimeAmount?
    private var idleTimer: DeadlineTimer?
    /// Bytes the partner spliced into this end's connection: on the client end, what the API
    /// server sent the client after the 101 (for the session's access-log line).
    private(set) var bytesToChannel = 0

    private init() {
        Self.liveInstances.add(1, ordering: .relaxed)
    }

    deinit {
        Self.liveInstances.subtract(1, ordering: .relaxed)
    }

    /// Ends not yet freed, for the test that a closed session leaves nothing behind.
    static let liveInstances = Atomic<Int>(0)

    /// A pass-through end for the front of a client pipeline, linked later with `link(to:)`.
    static func passThrough() -> SpliceHandler {
        SpliceHandler()
    }

    /// Links a pass-through client end with a fresh upstream end and returns the latter.
    func makePartner() -> SpliceHandler {
        let upstream = SpliceHandler()
        upstream.partner = self
        partner = upstream
        return upstream
    }

    /// From now on every byte read is spliced to the partner, and reads follow its writability.
    func activate() {
        isActive = true
        if let idleTimeout, let context {
            let timer = DeadlineTimer(eventLoop: context.eventLoop) { [weak self] in
                guard let self, let context = self.context else { return }
                self.partner?.closeFromPartner()
                context.close(promise: nil)
            }
            timer.set(after: idleTimeout)
            idleTimer = timer
        }
        for buffer in early { partner?.writeFromPartner(buffer) }
        if !early.isEmpty { partner?.flushFromPartner() }
        early = []
        if readPending, let context, partner?.isWritable ?? false {
            readPending = false
            context.read()
        }
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    /// Lets go of the context and the partner: the two ends refer to each other, so without
    /// this the ends of every spliced session (and their pipelines) would never be freed.
    func handlerRemoved(context: ChannelHandlerContext) {
        idleTimer?.cancel()
        idleTimer = nil
        partner = nil
        self.context = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard isActive else {
            context.fireChannelRead(data)
            return
        }
        let buffer = unwrapInboundIn(data)
        noteActivity()
        partner?.noteActivity()
        if let partner, partner.isActive {
            partner.writeFromPartner(buffer)
        } else {
            early.append(buffer)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        guard isActive else {
            context.fireChannelReadComplete()
            return
        }
        partner?.flushFromPartner()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if isActive, context.channel.isWritable {
            partner?.partnerBecameWritable()
        }
        context.fireChannelWritabilityChanged()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard isActive else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        if let event = event as? ChannelEvent, case .inputClosed = event {
            partner?.closeOutputFromPartner()
        }
        // Other events (a request to quiesce, for one) do not end a spliced session.
    }

    func channelInactive(context: ChannelHandlerContext) {
        idleTimer?.cancel()
        if isActive {
            partner?.closeFromPartner()
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard isActive else {
            context.fireErrorCaught(error)
            return
        }
        partner?.closeFromPartner()
        context.close(promise: nil)
    }

    func read(context: ChannelHandlerContext) {
        if !isActive || (partner?.isWritable ?? false) {
            context.read()
        } else {
            readPending = true
        }
    }

    // MARK: Called by the partner

    private var isWritable: Bool { context?.channel.isWritable ?? false }

    /// Bytes moved: the idle timeout, if any, starts over.
    private func noteActivity() {
        if let idleTimeout { idleTimer?.set(after: idleTimeout) }
    }

    private func writeFromPartner(_ buffer: ByteBuffer) {
        bytesToChannel += buffer.readableBytes
        context?.write(wrapOutboundOut(buffer), promise: nil)
    }

    /// Flushes what the partner wrote: bytes a removed decoder forwarded arrive without a
    /// read-complete, so whoever triggers that removal flushes once afterwards.
    func flushFromPartner() {
        context?.flush()
    }

    private func partnerBecameWritable() {
        if readPending, let context {
            readPending = false
            context.read()
        }
    }

    private func closeOutputFromPartner() {
        guard let context else { return }
        context.flush()
        context.close(mode: .output).assumeIsolated().whenFailure { _ in
            // The transport cannot half-close (TLS, for one): close fully.
            context.close(promise: nil)
        }
    }

    /// The partner's connection ended: what it sent on is flushed first (bytes that came with
    /// the 101 reach this end without a read-complete to flush them), then this one closes.
    private func closeFromPartner() {
        context?.flush()
        context?.close(promise: nil)
    }
}

/// Holds back the end of input an upstream connection reads while it switches to a splice.
/// NIO's HTTP decoder leaves the pipeline only after the current round of I/O, forwarding the
/// bytes that came after the `101` as it goes; an end of input it saw first would make it drop
/// them (it forwards leftovers only when no EOF was seen). An API server that answers `101`,
/// writes and closes at once (a WebSocket `kubectl exec` of a command that ends at once) would
/// lose the session's output. Passed on one task later, the event comes after those bytes.
final class EndOfInputDeferral: ChannelInboundHandler {
    typealias InboundIn = NIOAny

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let channelEvent = event as? ChannelEvent, case .inputClosed = channelEvent {
            context.eventLoop.assumeIsolated().execute { context.fireUserInboundEventTriggered(event) }
            return
        }
        context.fireUserInboundEventTriggered(event)
    }
}

import Logging
import NIOCore
import NIOHPACK
import NIOHTTP1
import NIOHTTP2

/// Serves the streams of one HTTP/2 client connection. Each stream gets a `ProxyHandler` of its
/// own, so every check and header rule is the one HTTP/1.1 gets, but no child channel: the
/// frames of all streams arrive here, already checked by `NIOHTTP2Handler` (framing, content
/// length; the header-block rules are checked here, `requestHead`), and each stream's response
/// leaves from here as frames. NIO's channel, pipeline and HTTP/1 codec per stream cost about
/// as much again as the rest of its HTTP/2 stack per request.
///
/// Flow control is per stream, as with NIO's multiplexer. A stream's request body is given
/// window back only as the API server takes it. A stream whose client grants no more window
/// stops reading its own upstream; the connection's other streams go on.
final class HTTP2StreamsHandler: ChannelInboundHandler {
    typealias InboundIn = HTTP2Frame
    typealias OutboundOut = HTTP2Frame

    /// The receive window kept open, per stream and for the connection (HTTP/2's initial 64 KiB).
    static let targetWindow = 65_535
    /// Request bytes taken by a stream are given back once at least this many are owed.
    static let windowGrantThreshold = 8_192

    private let gateway: GatewayContext
    private var context: ChannelHandlerContext?
    private var clientAddress: String?
    private var streams: [HTTP2StreamID: HTTP2ClientStream] = [:]
    /// Streams that got frames since the last read completed: they send on what went upstream.
    private var readStreams: [HTTP2ClientStream] = []
    /// The client's SETTINGS_INITIAL_WINDOW_SIZE: how much a new stream may send it.
    private var peerInitialWindow = 65_535
    /// What the client lets the whole connection send it, less what was written since. NIO holds
    /// DATA beyond it without limit, so a stream stops reading its upstream when this runs out too.
    private(set) var connectionCredit = 65_535
    private var highestStreamID = HTTP2StreamID(0)
    /// Within `channelRead`: what is written now is flushed when the read completes.
    private var reading = false
    /// Flushes written frames after the event loop's round of I/O events: the responses of
    /// several streams that arrive together leave in one TLS record and one write.
    private let roundFlush = RoundFlush()
    /// The server is draining: GOAWAY is sent, and the connection closes once its streams end.
    private var quiescing = false
    /// Header blocks reset for breaking RFC 9113's rules, on this connection.
    private var refusedBlocks = 0
    /// NIO's default for stream errors on one connection (`maximumConnectionGlitches`).
    static let maximumRefusedBlocks = 200
    /// Runs while the connection has no stream: when it expires, the connection is closed with
    /// GOAWAY. As over HTTP/1.1, the first stream must come within the request-head timeout,
    /// and a later one within the idle timeout (kube-apiserver's, 90 s).
    private var idleTimer: DeadlineTimer?
    /// Told of every frame `NIOHTTP2Handler` writes, its own GOAWAYs among them.
    let writtenFrames = WrittenFrameWatch()
    /// One timer for the response-head deadlines of all the streams: a stream sets and clears
    /// its deadline without scheduling and cancelling a task of the event loop's (a lock and a
    /// linear search of its timer heap per cancel). It fires at the earliest deadline set,
    /// expires the streams whose deadlines have passed and is set again for the next one.
    private var deadlineTimer: DeadlineTimer?

    init(gateway: GatewayContext) {
        self.gateway = gateway
    }

    var isParentWritable: Bool { context?.channel.isWritable ?? false }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        clientAddress = context.channel.remoteAddress?.clientIPAddress
        let timer = DeadlineTimer(eventLoop: context.eventLoop) { [weak self] in self?.closeIdle() }
        timer.set(after: gateway.requestHeadTimeout)
        idleTimer = timer
        deadlineTimer = DeadlineTimer(eventLoop: context.eventLoop) { [weak self] in self?.expireDeadlines() }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        idleTimer?.cancel()
        idleTimer = nil
        deadlineTimer?.cancel()
        deadlineTimer = nil
        closeAllStreams()
        self.context = nil
    }

    /// Time between the GOAWAY of an idle connection and its close, as Go's server allows: a
    /// client whose new stream crossed the GOAWAY reads it (and retries elsewhere) instead of a
    /// connection reset, which a close with its HEADERS unread would send.
    static let idleCloseGrace = TimeAmount.seconds(1)

    private func closeIdle() {
        guard let context, streams.isEmpty, !quiescing else { return }
        gateway.logger.debug("closing an HTTP/2 connection that opened no stream in time")
        quiescing = true
        let goAway = HTTP2Frame(
            streamID: .rootStream, payload: .goAway(lastStreamID: highestStreamID, errorCode: .noError, opaqueData: nil)
        )
        context.writeAndFlush(wrapOutboundOut(goAway), promise: nil)
        let channel = context.channel
        context.eventLoop.assumeIsolated().scheduleTask(in: Self.idleCloseGrace) { channel.close(promise: nil) }
    }

    /// A stream's response-head deadline was set to `deadline`.
    fileprivate func deadlineSet(_ deadline: NIODeadline) {
        guard let deadlineTimer else { return }
        if let due = deadlineTimer.deadline, due <= deadline { return }
        deadlineTimer.set(at: deadline)
    }

    /// The timer expired (it holds no deadline now).
    private func expireDeadlines() {
        let now = NIODeadline.now()
        var expired: [StreamResponseDeadline] = []
        var next: NIODeadline?
        for stream in streams.values {
            guard let deadline = stream.responseDeadline, let due = deadline.due else { continue }
            if due <= now {
                expired.append(deadline)
            } else if next.map({ due < $0 }) ?? true {
                next = due
            }
        }
        if let next { deadlineSet(next) }
        // After the walk: an expiry answers its stream, which may end it.
        for deadline in expired { deadline.expire() }
    }

    // MARK: Frames from the client

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        reading = true
        defer { reading = false }
        switch frame.payload {
        case .headers(let headers):
            if let stream = streams[frame.streamID] {
                // Trailers: the request is complete (they are not forwarded, as over HTTP/1.1).
                guard Self.isValidTrailers(headers.headers) else {
                    refuse(frame.streamID, context: context)
                    return
                }
                stream.requestEnded = true
                stream.proxy.receive(.end(nil))
                noteRead(stream)
            } else {
                openStream(frame.streamID, headers: headers.headers, endStream: headers.endStream)
            }
        case .data(let data):
            guard let stream = streams[frame.streamID] else { return }
            guard case .byteBuffer(let body) = data.data else { return }
            stream.owed += body.readableBytes + (data.paddingBytes.map { $0 + 1 } ?? 0)
            if body.readableBytes > 0 { stream.proxy.receive(.body(body)) }
            if data.endStream {
                stream.requestEnded = true
                stream.proxy.receive(.end(nil))
            } else {
                stream.proxy.requestClientBytes()
            }
            noteRead(stream)
        case .windowUpdate(let increment):
            if frame.streamID == .rootStream {
                let wasOpen = connectionCredit > 0
                connectionCredit += increment
                if !wasOpen && connectionCredit > 0 {
                    for stream in streams.values where stream.isWritable { stream.proxy.clientWritabilityChanged() }
                }
                return
            }
            streams[frame.streamID]?.addCredit(increment)
        case .settings(.settings(let settings)):
            for setting in settings where setting.parameter == .initialWindowSize {
                let delta = setting.value - peerInitialWindow
                peerInitialWindow = setting.value
                for stream in streams.values { stream.addCredit(delta) }
            }
        case .rstStream, .goAway, .ping, .priority, .settings, .pushPromise, .alternativeService, .origin:
            // Resets arrive as `StreamClosedEvent`s; the rest is the connection's business,
            // handled by `NIOHTTP2Handler`.
            break
        }
    }

    private func openStream(_ id: HTTP2StreamID, headers: HPACKHeaders, endStream: Bool) {
        // (After GOAWAY, NIO drops the HEADERS of streams above the last one it names.)
        guard let context else { return }
        guard let head = Self.requestHead(headers, endStream: endStream) else {
            refuse(id, context: context)
            return
        }
        idleTimer?.clear()
        let proxy = ProxyHandler(gateway: gateway, clientSplice: nil)
        let stream = HTTP2ClientStream(
            id: id, connection: self, proxy: proxy, credit: peerInitialWindow, eventLoop: context.eventLoop,
            allocator: context.channel.allocator)
        streams[id] = stream
        if id > highestStreamID { highestStreamID = id }
        proxy.start(serving: stream, clientAddress: clientAddress)
        // Set before the head is delivered: a request answered at once (a health check, a 401)
        // must not look like one whose body is still coming.
        stream.requestEnded = endStream
        proxy.receive(.head(head))
        if endStream { proxy.receive(.end(nil)) }
        noteRead(stream)
    }

    /// Resets a stream whose header block breaks RFC 9113's rules (PROTOCOL_ERROR, as NIO's own
    /// check would), from within `channelRead`: the read's end flushes it. A connection that
    /// sends more such blocks than NIO tolerates stream errors of its own (its "glitches", which
    /// it counts apart) is sent GOAWAY(ENHANCE_YOUR_CALM) and closed, as NIO does.
    private func refuse(_ id: HTTP2StreamID, context: ChannelHandlerContext) {
        context.write(wrapOutboundOut(HTTP2Frame(streamID: id, payload: .rstStream(.protocolError))), promise: nil)
        refusedBlocks += 1
        guard refusedBlocks > Self.maximumRefusedBlocks else { return }
        let goAway = HTTP2Frame(
            streamID: .rootStream,
            payload: .goAway(lastStreamID: highestStreamID, errorCode: .enhanceYourCalm, opaqueData: nil))
        context.writeAndFlush(wrapOutboundOut(goAway), promise: nil)
        context.close(promise: nil)
    }

    private func noteRead(_ stream: HTTP2ClientStream) {
        guard !stream.inReadList else { return }
        stream.inReadList = true
        readStreams.append(stream)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        let streams = readStreams
        readStreams.removeAll(keepingCapacity: true)
        for stream in streams {
            stream.inReadList = false
            stream.proxy.clientReadComplete()
        }
        context.flush()
        context.fireChannelReadComplete()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        switch event {
        case let closed as StreamClosedEvent:
            guard let stream = streams.removeValue(forKey: closed.streamID) else { return }
            stream.closed = true
            // Reset by the client (a cancelled watch) or failed: give up its exchange.
            if !stream.responseEnded { stream.proxy.clientClosed() }
            stream.proxy.detach()
            if streams.isEmpty && !quiescing { idleTimer?.set(after: gateway.idleTimeout) }
            if quiescing && streams.isEmpty {
                // Closed from the next tick: this event comes from within the write of the
                // stream's last frame, which the close would otherwise throw away unsent.
                context.eventLoop.assumeIsolated().execute {
                    context.flush()
                    context.close(promise: nil)
                }
            }
        case let window as NIOHTTP2WindowUpdatedEvent:
            // The connection's receive window is topped up as frames arrive (each stream's is
            // given back only as its body is taken), as NIO's multiplexer does.
            guard window.streamID == .rootStream, let size = window.inboundWindowSize,
                size <= Self.targetWindow / 2
            else { return }
            let update = HTTP2Frame(
                streamID: .rootStream, payload: .windowUpdate(windowSizeIncrement: Self.targetWindow - size))
            context.write(wrapOutboundOut(update), promise: nil)
            if !reading { context.flush() }
        case is ChannelShouldQuiesceEvent:
            // Graceful shutdown: no new streams (GOAWAY names the last one taken); those in
            // progress finish, then the connection closes.
            quiescing = true
            let goAway = HTTP2Frame(
                streamID: .rootStream,
                payload: .goAway(lastStreamID: highestStreamID, errorCode: .noError, opaqueData: nil))
            context.writeAndFlush(wrapOutboundOut(goAway), promise: nil)
            if streams.isEmpty { context.close(promise: nil) }
        case is NIOHTTP2StreamCreatedEvent, is NIOHTTP2BulkStreamWindowChangeEvent:
            break
        default:
            context.fireUserInboundEventTriggered(event)
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            for stream in streams.values where stream.isWritable { stream.proxy.clientWritabilityChanged() }
        }
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        closeAllStreams()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard let streamError = error as? NIOHTTP2Errors.StreamError else {
            context.fireErrorCaught(error)
            // NIO answers a connection error (a frame that does not parse, a flood, a SETTINGS
            // value or a window out of range) with GOAWAY and an error code, and leaves the
            // connection open; RFC 9113 §5.4.1 has it closed. The errors NIO reports for one
            // stream (answered RST_STREAM) leave the connection serving.
            if Self.endsConnection(error) || writtenFrames.sentErrorGoAway { context.close(promise: nil) }
            return
        }
        // NIO refused to send one of a stream's frames (a body longer than its content-length,
        // say). The stream cannot be completed: it is reset, which abandons its exchange. From
        // the next tick: this error comes from within that stream's own write.
        let id = streamError.streamID
        context.eventLoop.assumeIsolated().execute {
            guard let context = self.context, let stream = self.streams[id], !stream.closed else { return }
            context.writeAndFlush(
                self.wrapOutboundOut(HTTP2Frame(streamID: id, payload: .rstStream(.internalError))), promise: nil)
        }
    }

    /// Whether NIO's HTTP/2 handler reported `error` for a connection that cannot go on: its
    /// frames no longer parse, or the client floods it (NIO's denial-of-service limits, among
    /// them more than 200 resets in 30 s: the "rapid reset" attack, CVE-2023-44487).
    static func endsConnection(_ error: any Error) -> Bool {
        switch error {
        case is NIOHTTP2Errors.UnableToParseFrame, is NIOHTTP2Errors.BadClientMagic,
            is NIOHTTP2Errors.ExcessivelyLargeHeaderBlock, is NIOHTTP2Errors.ExcessiveContinuationFrames,
            is NIOHTTP2Errors.ExcessiveRSTFrames, is NIOHTTP2Errors.ExcessiveControlFrames,
            is NIOHTTP2Errors.ExcessiveEmptyDataFrames, is NIOHTTP2Errors.ExcessiveStreamErrors,
            is NIOHTTP2Errors.ExcessiveNumberOfGlitches, is NIOHTTP2Errors.ExcessiveOutboundFrameBuffering,
            // NIO's GOAWAY for a connection error, refused because ours (a drain's) named a
            // lower last stream: the error that caused it follows, and the delegate never saw it.
            is NIOHTTP2Errors.RaisedGoawayLastStreamID:
            true
        default:
            false
        }
    }

    /// Every frame NIO writes for the connection passes here: a GOAWAY with an error code is
    /// NIO's answer to a connection error, reported just after as `errorCaught`, whatever the
    /// error's type. (This handler's own GOAWAYs, for an idle connection or a drain, say
    /// NO_ERROR.)
    final class WrittenFrameWatch: NIOHTTP2FrameDelegate {
        private(set) var sentErrorGoAway = false

        func wroteFrame(_ frame: HTTP2Frame) {
            if case .goAway(_, let code, _) = frame.payload, code != .noError { sentErrorGoAway = true }
        }
    }

    private func closeAllStreams() {
        let open = streams.values
        streams.removeAll()
        for stream in open {
            stream.closed = true
            if !stream.responseEnded { stream.proxy.clientClosed() }
            stream.proxy.detach()
        }
    }

    // MARK: Frames to the client

    func send(_ part: HTTPServerResponsePart, on stream: HTTP2ClientStream, flush: Bool) {
        guard let context, !stream.closed, !stream.responseEnded else { return }
        let payload: HTTP2Frame.FramePayload
        switch part {
        case .head(let head):
            payload = .headers(.init(headers: Self.responseHeaders(head)))
        case .body(.byteBuffer(let body)):
            stream.credit -= body.readableBytes
            connectionCredit -= body.readableBytes
            payload = .data(.init(data: .byteBuffer(body)))
        case .body(.fileRegion):
            preconditionFailure("a response body is relayed as bytes")
        case .end:
            // Marked first: the write may close the stream at once (`StreamClosedEvent`).
            stream.responseEnded = true
            payload = .data(.init(data: .byteBuffer(ByteBuffer()), endStream: true))
        }
        context.write(wrapOutboundOut(HTTP2Frame(streamID: stream.id, payload: payload)), promise: nil)
        if stream.responseEnded && !stream.requestEnded && !stream.closed {
            // A complete response to a request still arriving (refused before its body, say):
            // the client is asked to stop sending it (RFC 9113 §8.1), rather than the proxy
            // reading and dropping it for as long as the client cares to send.
            let stop = HTTP2Frame(streamID: stream.id, payload: .rstStream(.noError))
            context.write(wrapOutboundOut(stop), promise: nil)
        }
        if flush && !reading { roundFlush.schedule(context) }
    }

    func flush() {
        if !reading, let context { roundFlush.schedule(context) }
    }

    /// Ends a stream its `ProxyHandler` is done with: a response cut short is reset (CANCEL); a
    /// complete one whose request is still arriving stops the upload (NO_ERROR).
    func reset(_ stream: HTTP2ClientStream) {
        guard let context, !stream.closed else { return }
        let reason: HTTP2ErrorCode = stream.responseEnded ? .noError : .cancel
        stream.responseEnded = true
        context.write(wrapOutboundOut(HTTP2Frame(streamID: stream.id, payload: .rstStream(reason))), promise: nil)
        if !reading { context.flush() }
    }

    /// Gives a stream's taken request bytes back to its client as window.
    func grantWindow(_ stream: HTTP2ClientStream) {
        guard let context, !stream.closed, !stream.requestEnded, stream.owed >= Self.windowGrantThreshold else {
            return
        }
        let increment = stream.owed
        stream.owed = 0
        context.write(
            wrapOutboundOut(HTTP2Frame(streamID: stream.id, payload: .windowUpdate(windowSizeIncrement: increment))),
            promise: nil)
        if !reading { context.flush() }
    }
}

/// One stream of an HTTP/2 client connection, as its `ProxyHandler` sees it.
final class HTTP2ClientStream: ClientEnd {
    let id: HTTP2StreamID
    private unowned let connection: HTTP2StreamsHandler
    let proxy: ProxyHandler
    let eventLoop: any EventLoop
    let allocator: ByteBufferAllocator
    /// What the client lets this stream send it: its window, less what was written since.
    var credit: Int
    /// Request bytes taken and not yet given back as window.
    var owed = 0
    var requestEnded = false
    var responseEnded = false
    /// NIO closed the stream (both ends done, or reset).
    var closed = false
    var inReadList = false

    init(
        id: HTTP2StreamID, connection: HTTP2StreamsHandler, proxy: ProxyHandler, credit: Int, eventLoop: any EventLoop,
        allocator: ByteBufferAllocator
    ) {
        self.id = id
        self.connection = connection
        self.proxy = proxy
        self.credit = credit
        self.eventLoop = eventLoop
        self.allocator = allocator
    }

    /// More window from the client (a WINDOW_UPDATE, or a new SETTINGS_INITIAL_WINDOW_SIZE,
    /// which may also take some away); the proxy hears when the stream can be written again.
    func addCredit(_ delta: Int) {
        let wasWritable = isWritable
        credit += delta
        if !wasWritable && isWritable { proxy.clientWritabilityChanged() }
    }

    var isWritable: Bool { credit > 0 && connection.connectionCredit > 0 && connection.isParentWritable }
    var closeFuture: EventLoopFuture<Void>? { nil }

    func write(_ part: HTTPServerResponsePart) {
        connection.send(part, on: self, flush: false)
    }

    func writeAndFlush(_ part: HTTPServerResponsePart) {
        connection.send(part, on: self, flush: true)
    }

    func flush() {
        connection.flush()
    }

    func close() {
        connection.reset(self)
    }

    func read() {
        connection.grantWindow(self)
    }

    /// The stream's response-head deadline, kept by its connection's one timer.
    fileprivate var responseDeadline: StreamResponseDeadline?

    func makeDeadline(expired: @escaping () -> Void) -> any ExchangeDeadline {
        let deadline = StreamResponseDeadline(connection: connection, expired: expired)
        responseDeadline = deadline
        return deadline
    }
}

/// A stream's deadline, expired by its connection's sweep (`HTTP2StreamsHandler.expireDeadlines`).
final class StreamResponseDeadline: ExchangeDeadline {
    private unowned let connection: HTTP2StreamsHandler
    private var expired: (() -> Void)?
    /// When it expires; nil when not set.
    fileprivate private(set) var due: NIODeadline?

    fileprivate init(connection: HTTP2StreamsHandler, expired: @escaping () -> Void) {
        self.connection = connection
        self.expired = expired
    }

    func set(after timeout: TimeAmount) {
        let due = NIODeadline.now() + timeout
        self.due = due
        connection.deadlineSet(due)
    }

    func clear() {
        due = nil
    }

    func cancel() {
        due = nil
        expired = nil
    }

    fileprivate func expire() {
        due = nil
        expired?()
    }
}

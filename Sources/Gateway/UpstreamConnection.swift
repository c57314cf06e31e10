import NIOCore
import NIOHTTP1
import NIOHTTP2
import NIOPosix
import NIOSSL

/// What an upstream connection reports to the client-side handler it is serving.
/// All calls arrive on the event loop both connections share.
protocol UpstreamResponseDelegate: AnyObject {
    func upstreamResponseHead(_ head: HTTPResponseHead)
    func upstreamResponseBody(_ body: ByteBuffer)
    func upstreamResponseEnd()
    func upstreamReadComplete()
    func upstreamWritabilityChanged(isWritable: Bool)
    func upstreamFailed(_ failure: UpstreamFailure)
    /// The API server answered `101` and its head has been relayed; returns the client-side
    /// splice end to link with, or nil to refuse the switch (the connection is then closed).
    func upstreamSwitchingProtocols() -> SpliceHandler?
}

/// Why the API server could not answer; each maps to the status the client gets.
enum UpstreamFailure: Error, Sendable, CustomStringConvertible {
    case unreachable(String)
    case tls(String)
    case timedOut
    case closedEarly
    case protocolError(String)

    init(classifying error: any Error) {
        switch error {
        case let error as UpstreamFailure:
            self = error
        case is NIOSSLError, is BoringSSLError:
            self = .tls("\(error)")
        case ChannelError.connectTimeout:
            self = .unreachable("connect timed out")
        case let error as NIOConnectionError:
            self = .unreachable("\(error.connectionErrors.first.map { "\($0.error)" } ?? "\(error)")")
        case let error as IOError:
            self = .unreachable("\(error)")
        case is HTTPParserError:
            self = .protocolError("\(error)")
        case is NIOHTTP2Errors.StreamClosed:
            // The API server reset the stream, or dropped it with GOAWAY.
            self = .closedEarly
        default:
            self = .unreachable("\(error)")
        }
    }

    var status: StatusResponse {
        switch self {
        case .unreachable(let why): .serviceUnavailable("the API server is unreachable: \(why)")
        case .tls(let why): .badGateway("TLS to the API server failed: \(why)")
        case .timedOut: .gatewayTimeout("the API server did not answer in time")
        case .closedEarly: .badGateway("the API server closed the connection before answering")
        case .protocolError(let why): .badGateway("the API server's answer was not valid HTTP: \(why)")
        }
    }

    /// The answer did not come in time (not: the API server could not be reached or failed).
    var isTimeout: Bool {
        if case .timedOut = self { return true }
        return false
    }

    /// A short bounded label for logs and metrics.
    var kind: String {
        switch self {
        case .unreachable: "unreachable"
        case .tls: "tls"
        case .timedOut: "timeout"
        case .closedEarly: "closed"
        case .protocolError: "protocol"
        }
    }

    var description: String {
        switch self {
        case .unreachable(let why): "unreachable: \(why)"
        case .tls(let why): "TLS: \(why)"
        case .timedOut: "timed out"
        case .closedEarly: "closed before answering"
        case .protocolError(let why): "protocol error: \(why)"
        }
    }
}

/// The last handler of an upstream connection's pipeline: forwards the API server's answer to
/// its delegate and holds back reads while the delegate's client cannot take more bytes.
final class UpstreamHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundIn = HTTPClientRequestPart
    typealias OutboundOut = HTTPClientRequestPart

    weak var delegate: (any UpstreamResponseDelegate)?
    /// Called when the connection closes while no delegate holds it (an idle pooled connection).
    var onIdleClose: (() -> Void)?
    private(set) var context: ChannelHandlerContext?
    private var readsPaused = false
    private var readPending = false
    /// Whether the last response allows the connection to carry another request.
    private(set) var responseKeepAlive = true
    private var switchingProtocols = false
    private let roundFlush = RoundFlush()

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            responseKeepAlive = head.isKeepAlive
            switchingProtocols = head.status == .switchingProtocols
            delegate?.upstreamResponseHead(head)
        case .body(let body):
            delegate?.upstreamResponseBody(body)
        case .end:
            // The response decoder emits `.end` right after a 101 head: that is the moment to switch.
            if switchingProtocols {
                switchToSplice(context: context)
            } else {
                delegate?.upstreamResponseEnd()
            }
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        delegate?.upstreamReadComplete()
    }

    /// Takes the HTTP handlers out of this connection and splices it, as raw bytes, to the
    /// client connection the delegate names. Bytes that came with the 101 are not lost: the
    /// decoder is removed last and forwards what it holds to the splice end.
    private func switchToSplice(context: ChannelHandlerContext) {
        guard let delegate, let clientEnd = delegate.upstreamSwitchingProtocols() else {
            close()
            return
        }
        self.delegate = nil
        let upstreamEnd = clientEnd.makePartner()
        let pipeline = context.pipeline.syncOperations
        do {
            try pipeline.addHandler(upstreamEnd)
            clientEnd.activate()
            upstreamEnd.activate()
            let decoder = try pipeline.handler(type: ByteToMessageHandler<HTTPResponseDecoder>.self)
            try pipeline.addHandler(EndOfInputDeferral(), position: .before(decoder))
            let encoder = try pipeline.handler(type: HTTPRequestEncoder.self)
            let validator = try pipeline.handler(type: NIOHTTPRequestHeadersValidator.self)
            pipeline.removeHandler(validator, promise: nil)
            pipeline.removeHandler(encoder, promise: nil)
            pipeline.removeHandler(context: context, promise: nil)
            pipeline.removeHandler(decoder, promise: nil)
            // The decoder is mid-decode, so it leaves (and forwards its leftovers, with no
            // read-complete) only once this call stack unwinds: flush on the next tick.
            let channel = context.channel
            context.eventLoop.assumeIsolated().execute {
                clientEnd.flushFromPartner()
                channel.read()
            }
        } catch {
            context.close(promise: nil)
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        delegate?.upstreamWritabilityChanged(isWritable: context.channel.isWritable)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        // Half-closure is allowed so spliced sessions can pass it on; an HTTP connection whose
        // peer stopped sending can carry nothing more.
        if let event = event as? ChannelEvent, case .inputClosed = event {
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let delegate {
            self.delegate = nil
            delegate.upstreamFailed(.closedEarly)
        } else {
            onIdleClose?()
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        let delegate = self.delegate
        self.delegate = nil
        delegate?.upstreamFailed(UpstreamFailure(classifying: error))
        context.close(promise: nil)
    }

    func read(context: ChannelHandlerContext) {
        if readsPaused {
            readPending = true
        } else {
            context.read()
        }
    }

    func write(_ part: HTTPClientRequestPart, flush: Bool = false) {
        guard let context else { return }
        context.write(wrapOutboundOut(part), promise: nil)
        if flush { roundFlush.schedule(context) }
    }

    func flush() {
        if let context { roundFlush.schedule(context) }
    }

    func pauseReads() {
        readsPaused = true
    }

    func resumeReads() {
        readsPaused = false
        if readPending, let context {
            readPending = false
            context.read()
        }
    }

    func close() {
        delegate = nil
        guard let context else { return }
        roundFlush.flushNow(context)
        context.close(promise: nil)
    }
}

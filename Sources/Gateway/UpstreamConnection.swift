import NIOCore
import NIOHTTP1
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
final class UpstreamHandler: ChannelDuplexHandler {
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
            delegate?.upstreamResponseHead(head)
        case .body(let body):
            delegate?.upstreamResponseBody(body)
        case .end:
            delegate?.upstreamResponseEnd()
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        delegate?.upstreamReadComplete()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        delegate?.upstreamWritabilityChanged(isWritable: context.channel.isWritable)
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
        if flush { context.flush() }
    }

    func flush() {
        context?.flush()
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
        context?.close(promise: nil)
    }
}

import NIOCore
import NIOHTTP1

/// Answers a request the HTTP decoder could not parse: 431 when its head is too large, 400
/// otherwise, both as Kubernetes `Status` JSON, then closes the connection. A parse error can
/// mean request smuggling, so nothing more is read from that connection. An error in a request
/// pipelined behind complete ones whose responses are still due is answered after them, in order.
final class ProtocolErrorHandler: ChannelDuplexHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private var hasUnterminatedResponse = false
    /// Request heads that went by, less the responses ended since.
    private var responsesDue = 0
    /// A request's head went by and its `.end` has not: an error now is in that request.
    private var requestInProgress = false
    private var deferredError: HTTPParserError?

    /// Complete requests whose responses have not ended yet.
    private var completeRequestsAwaitingResponse: Int {
        responsesDue - (requestInProgress ? 1 : 0)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head:
            responsesDue += 1
            requestInProgress = true
        case .end:
            requestInProgress = false
        case .body:
            break
        }
        context.fireChannelRead(data)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard let parserError = error as? HTTPParserError else {
            context.fireErrorCaught(error)
            return
        }
        if completeRequestsAwaitingResponse > 0 {
            if deferredError == nil { deferredError = parserError }
            return
        }
        answer(parserError, context: context)
    }

    private func answer(_ parserError: HTTPParserError, context: ChannelHandlerContext) {
        if !hasUnterminatedResponse {
            let status: StatusResponse =
                parserError == .headerOverflow
                ? StatusResponse(
                    code: .requestHeaderFieldsTooLarge, reason: "RequestHeaderFieldsTooLarge",
                    message: "the request's header section is too large")
                : .badRequest("malformed HTTP request")
            let body = status.json
            let headers = HTTPHeaders([
                ("Content-Type", "application/json"), ("Content-Length", String(body.utf8.count)),
                ("Connection", "close"),
            ])
            context.write(
                wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status.code, headers: headers))),
                promise: nil)
            context.write(
                wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: body)))), promise: nil)
            let channel = context.channel
            context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
        } else {
            context.close(promise: nil)
        }
        // The rest of the pipeline must not act on a half-parsed request.
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        var ended = false
        switch unwrapOutboundIn(data) {
        case .head(let head) where head.status.code >= 200: hasUnterminatedResponse = true
        case .end:
            hasUnterminatedResponse = false
            responsesDue = max(0, responsesDue - 1)
            ended = true
        default: break
        }
        context.write(data, promise: promise)
        if ended, completeRequestsAwaitingResponse <= 0, let error = deferredError {
            deferredError = nil
            answer(error, context: context)
        }
    }
}

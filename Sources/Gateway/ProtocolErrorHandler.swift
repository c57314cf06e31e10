import NIOCore
import NIOHTTP1

/// Answers a request the HTTP decoder could not parse: 431 when its head is too large, 400
/// otherwise, both as Kubernetes `Status` JSON, then closes the connection. A parse error can
/// mean request smuggling, so nothing more is read from that connection.
final class ProtocolErrorHandler: ChannelDuplexHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private var hasUnterminatedResponse = false

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard let parserError = error as? HTTPParserError else {
            context.fireErrorCaught(error)
            return
        }
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
        switch unwrapOutboundIn(data) {
        case .head(let head) where head.status.code >= 200: hasUnterminatedResponse = true
        case .end: hasUnterminatedResponse = false
        default: break
        }
        context.write(data, promise: promise)
    }
}

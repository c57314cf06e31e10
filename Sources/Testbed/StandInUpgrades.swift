import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOWebSocket

/// The upgrades the stand-in API server speaks: the Kubernetes WebSocket channel protocol for
/// `exec` and `attach` (what kubectl 1.30 and later use), and a raw `SPDY/3.1` switch whose
/// connection simply echoes bytes (enough to prove a splice carries them both ways).
enum StandInUpgrades {
    /// Streams of the channel protocol: the first byte of every binary message.
    enum Stream: UInt8 {
        case stdin = 0
        case stdout = 1
        case stderr = 2
        case error = 3
        case resize = 4
        /// v5: `[255, stream]` says the sender closed that stream.
        case close = 255
    }

    static let channelProtocols = ["v5.channel.k8s.io", "v4.channel.k8s.io"]

    /// What a completed session leaves for tests to inspect.
    struct SessionRecord: Sendable {
        var command: [String]
        var stdin: [UInt8]
    }

    static func makeUpgraders(
        authorize: @escaping @Sendable (HTTPRequestHead) -> Bool,
        record: @escaping @Sendable (HTTPRequestHead) -> Void,
        recordSession: @escaping @Sendable (SessionRecord) -> Void
    ) -> [any HTTPServerProtocolUpgrader] {
        let webSocket = NIOWebSocketServerUpgrader(
            maxFrameSize: 1 << 20, automaticErrorHandling: true,
            shouldUpgrade: { channel, head in
                let path = head.uri.prefix { $0 != "?" }
                let offered = head.headers[canonicalForm: "sec-websocket-protocol"].map(String.init)
                guard path.hasSuffix("/exec") || path.hasSuffix("/attach"), authorize(head),
                    let chosen = channelProtocols.first(where: offered.contains)
                else { return channel.eventLoop.makeSucceededFuture(nil) }
                record(head)
                return channel.eventLoop.makeSucceededFuture(HTTPHeaders([("Sec-WebSocket-Protocol", chosen)]))
            },
            upgradePipelineHandler: { channel, head in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        ChannelProtocolSession(uri: head.uri, recordSession: recordSession))
                }
            })
        return [webSocket, RawEchoUpgrader(authorize: authorize, record: record)]
    }

    /// Query parameters of a request target, repeated keys kept in order.
    static func parameters(_ uri: String) -> [(String, String)] {
        let query = uri.drop { $0 != "?" }.dropFirst()
        return query.split(separator: "&").map { item in
            let parts = item.split(separator: "=", maxSplits: 1)
            let value = parts.count > 1 ? String(parts[1]).removingPercentEncodingForTests() : ""
            return (String(parts[0]), value)
        }
    }
}

/// `SPDY/3.1` (or any other non-WebSocket protocol): answers 101, says hello right after it in
/// the same flight, then echoes every byte back until the client closes.
private final class RawEchoUpgrader: HTTPServerProtocolUpgrader, Sendable {
    let supportedProtocol = "SPDY/3.1"
    let requiredUpgradeHeaders: [String] = []
    private let authorize: @Sendable (HTTPRequestHead) -> Bool
    private let record: @Sendable (HTTPRequestHead) -> Void

    init(
        authorize: @escaping @Sendable (HTTPRequestHead) -> Bool, record: @escaping @Sendable (HTTPRequestHead) -> Void
    ) {
        self.authorize = authorize
        self.record = record
    }

    func buildUpgradeResponse(
        channel: any Channel, upgradeRequest: HTTPRequestHead, initialResponseHeaders: HTTPHeaders
    )
        -> EventLoopFuture<HTTPHeaders>
    {
        guard authorize(upgradeRequest) else {
            return channel.eventLoop.makeFailedFuture(TestbedError("unauthorized upgrade"))
        }
        record(upgradeRequest)
        var headers = initialResponseHeaders
        headers.add(name: "X-Stream-Protocol-Version", value: "portforward.k8s.io")
        return channel.eventLoop.makeSucceededFuture(headers)
    }

    func upgrade(context: ChannelHandlerContext, upgradeRequest: HTTPRequestHead) -> EventLoopFuture<Void> {
        context.eventLoop.makeCompletedFuture {
            try context.pipeline.syncOperations.addHandler(EchoHandler())
        }
    }
}

/// Says `upstream-ready\n` at once, then echoes; half-closes its output when the peer does.
private final class EchoHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    func handlerAdded(context: ChannelHandlerContext) {
        context.writeAndFlush(
            wrapOutboundOut(context.channel.allocator.buffer(string: "upstream-ready\n")), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.write(data, promise: nil)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        context.flush()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

/// One exec/attach session over the channel protocol. Commands the stand-in "runs":
/// `echo ARGS…` prints its arguments; `cat` (and attach) echo stdin to stdout until stdin
/// closes; `tar …` (what `kubectl cp` runs) swallows stdin; anything else exits 127.
private final class ChannelProtocolSession: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    private let command: [String]
    private let isAttach: Bool
    private let recordSession: @Sendable (StandInUpgrades.SessionRecord) -> Void
    private var stdin: [UInt8] = []
    private var finished = false

    init(uri: String, recordSession: @escaping @Sendable (StandInUpgrades.SessionRecord) -> Void) {
        self.command = StandInUpgrades.parameters(uri).filter { $0.0 == "command" }.map(\.1)
        self.isAttach = uri.prefix { $0 != "?" }.hasSuffix("/attach")
        self.recordSession = recordSession
    }

    func handlerAdded(context: ChannelHandlerContext) {
        guard !isAttach, let program = command.first else { return }
        switch program {
        case "echo":
            send(.stdout, Array((command.dropFirst().joined(separator: " ") + "\n").utf8), context: context)
            finish(context: context, exitCode: 0)
        case "cat", "tar", "sh":
            break  // waits for stdin
        default:
            send(.stderr, Array("\(program): command not found\n".utf8), context: context)
            finish(context: context, exitCode: 127)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.opcode {
        case .binary:
            var payload = frame.unmaskedData
            guard let streamByte = payload.readInteger(as: UInt8.self) else { return }
            let bytes = payload.readBytes(length: payload.readableBytes) ?? []
            switch StandInUpgrades.Stream(rawValue: streamByte) {
            case .stdin:
                stdin += bytes
                if command.first == "cat" || isAttach { send(.stdout, bytes, context: context) }
            case .close where bytes.first == StandInUpgrades.Stream.stdin.rawValue:
                recordSession(StandInUpgrades.SessionRecord(command: command, stdin: stdin))
                finish(context: context, exitCode: 0)
            default:
                break
            }
        case .connectionClose:
            if !finished {
                recordSession(StandInUpgrades.SessionRecord(command: command, stdin: stdin))
            }
            context.close(promise: nil)
        case .ping:
            context.writeAndFlush(
                wrapOutboundOut(WebSocketFrame(fin: true, opcode: .pong, data: frame.unmaskedData)), promise: nil)
        default:
            break
        }
    }

    private func send(_ stream: StandInUpgrades.Stream, _ bytes: [UInt8], context: ChannelHandlerContext) {
        var buffer = context.channel.allocator.buffer(capacity: bytes.count + 1)
        buffer.writeInteger(stream.rawValue)
        buffer.writeBytes(bytes)
        context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .binary, data: buffer)), promise: nil)
    }

    private func finish(context: ChannelHandlerContext, exitCode: Int) {
        guard !finished else { return }
        finished = true
        let status =
            exitCode == 0
            ? #"{"metadata":{},"status":"Success"}"#
            : #"{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"\#(exitCode)"}]}}"#
        send(.error, Array(status.utf8), context: context)
        var closeData = context.channel.allocator.buffer(capacity: 2)
        closeData.write(webSocketErrorCode: .normalClosure)
        context.writeAndFlush(
            wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: closeData)), promise: nil)
        // The client answers with its own close frame, and then the connection ends; a client
        // that never answers is cut off after a while.
        let channel = context.channel
        context.eventLoop.scheduleTask(in: .seconds(5)) { channel.close(promise: nil) }
    }
}

extension String {
    /// Percent-decoding for query values in tests (`+` is left alone, as Go's PathUnescape does).
    func removingPercentEncodingForTests() -> String {
        var bytes: [UInt8] = []
        var iterator = utf8.makeIterator()
        while let byte = iterator.next() {
            if byte == UInt8(ascii: "%"), let high = iterator.next(), let low = iterator.next(),
                let value = UInt8(String(decoding: [high, low], as: UTF8.self), radix: 16)
            {
                bytes.append(value)
            } else {
                bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

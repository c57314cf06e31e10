import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOWebSocket

/// The upgrades the stand-in API server speaks, as kube-apiserver and kubelet would:
/// - WebSocket: `exec` and `attach` over the Kubernetes channel protocol (v5/v4, what kubectl
///   1.30 and later use), and `portforward` as SPDY tunnelled in binary messages
///   (`SPDY/3.1+portforward.k8s.io`, what kubectl 1.31 and later try first).
/// - `SPDY/3.1` on a pod's `exec`/`attach` (v4.channel.k8s.io) and `portforward`
///   (portforward.k8s.io): real SPDY sessions, as older kubectls speak them.
/// - `SPDY/3.1` on any other path (say `/testbed/spdy-echo`): a raw switch whose connection
///   simply echoes bytes, enough to prove a splice carries them both ways.
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
    /// The one exec protocol served over SPDY: its error stream carries a `Status`.
    static let spdyExecProtocol = "v4.channel.k8s.io"
    static let portForwardProtocol = "portforward.k8s.io"
    /// What kubectl asks for to tunnel port-forward's SPDY through a WebSocket.
    static let tunnelledPortForwardProtocol = "SPDY/3.1+portforward.k8s.io"

    /// What a completed session leaves for tests to inspect.
    struct SessionRecord: Sendable {
        var command: [String]
        var stdin: [UInt8]
        /// The protocol that carried it, e.g. `v5.channel.k8s.io` or `SPDY/3.1 v4.channel.k8s.io`.
        var transport: String
    }

    /// One port-forward connection the stand-in made on a client's behalf.
    struct ForwardRecord: Sendable {
        var port: Int
        var requestID: String
        /// `SPDY/3.1`, or `SPDY/3.1+portforward.k8s.io` when tunnelled through a WebSocket.
        var transport: String
    }

    /// How upgrades reach the server's checks and records.
    struct Hooks: Sendable {
        var authorize: @Sendable (HTTPRequestHead) -> Bool
        var record: @Sendable (HTTPRequestHead) -> Void
        var recordSession: @Sendable (SessionRecord) -> Void
        var recordForward: @Sendable (ForwardRecord) -> Void
        /// Whether port-forward may be tunnelled through a WebSocket right now (an API server
        /// before 1.30, or with the feature off, refuses and kubectl falls back to SPDY).
        var tunnelsPortForward: @Sendable () -> Bool
    }

    static func makeUpgraders(hooks: Hooks) -> [any HTTPServerProtocolUpgrader] {
        let webSocket = NIOWebSocketServerUpgrader(
            maxFrameSize: 1 << 20, automaticErrorHandling: true,
            shouldUpgrade: { channel, head in
                guard hooks.authorize(head), let chosen = webSocketProtocol(for: head),
                    chosen != tunnelledPortForwardProtocol || hooks.tunnelsPortForward()
                else { return channel.eventLoop.makeSucceededFuture(nil) }
                hooks.record(head)
                return channel.eventLoop.makeSucceededFuture(HTTPHeaders([("Sec-WebSocket-Protocol", chosen)]))
            },
            upgradePipelineHandler: { channel, head in
                channel.eventLoop.makeCompletedFuture {
                    let pipeline = channel.pipeline.syncOperations
                    let chosen = webSocketProtocol(for: head)
                    if chosen == tunnelledPortForwardProtocol {
                        try pipeline.addHandler(WebSocketTunnelHandler())
                        try addSPDYSession(
                            SPDYPortForwardSession(transport: tunnelledPortForwardProtocol, hooks: hooks),
                            to: pipeline)
                    } else {
                        try pipeline.addHandler(
                            ChannelProtocolSession(
                                uri: head.uri, transport: chosen ?? "", recordSession: hooks.recordSession))
                    }
                }
            })
        return [webSocket, SPDYUpgrader(hooks: hooks)]
    }

    /// The WebSocket subprotocol to answer `head` with, or nil to decline.
    private static func webSocketProtocol(for head: HTTPRequestHead) -> String? {
        let offered = head.headers[canonicalForm: "sec-websocket-protocol"].map(String.init)
        switch podSubresource(head.uri) {
        case "exec", "attach":
            return channelProtocols.first(where: offered.contains)
        case "portforward":
            return offered.contains(tunnelledPortForwardProtocol) ? tunnelledPortForwardProtocol : nil
        default:
            return nil
        }
    }

    /// `exec` for `/api/v1/namespaces/NS/pods/NAME/exec?…`; nil for anything not under a pod.
    static func podSubresource(_ uri: String) -> Substring? {
        let parts = uri.prefix { $0 != "?" }.split(separator: "/")
        guard parts.count == 7, parts[0] == "api", parts[1] == "v1", parts[2] == "namespaces", parts[4] == "pods"
        else { return nil }
        return parts[6]
    }

    static func addSPDYSession(_ service: any SPDYStreamService, to pipeline: ChannelPipeline.SynchronousOperations)
        throws
    {
        try pipeline.addHandler(ByteToMessageHandler(SPDYFrameDecoder()))
        try pipeline.addHandler(SPDYConnectionHandler(service: service))
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

/// `SPDY/3.1`: on a pod's exec, attach and portforward, a SPDY session with the protocol the
/// client offers in `X-Stream-Protocol-Version` (declined when it offers none served here);
/// anywhere else, a raw echo.
private final class SPDYUpgrader: HTTPServerProtocolUpgrader, Sendable {
    let supportedProtocol = "SPDY/3.1"
    let requiredUpgradeHeaders: [String] = []
    private let hooks: StandInUpgrades.Hooks

    init(hooks: StandInUpgrades.Hooks) {
        self.hooks = hooks
    }

    private enum Target {
        case exec
        case portForward
        case rawEcho

        init?(_ head: HTTPRequestHead) {
            let offered = head.headers["X-Stream-Protocol-Version"].flatMap { $0.split(separator: ",") }
                .map { String($0.filter { $0 != " " }) }
            switch StandInUpgrades.podSubresource(head.uri) {
            case "exec", "attach":
                guard offered.contains(StandInUpgrades.spdyExecProtocol) else { return nil }
                self = .exec
            case "portforward":
                guard offered.contains(StandInUpgrades.portForwardProtocol) else { return nil }
                self = .portForward
            default:
                self = .rawEcho
            }
        }

        var protocolVersion: String {
            self == .exec ? StandInUpgrades.spdyExecProtocol : StandInUpgrades.portForwardProtocol
        }
    }

    func buildUpgradeResponse(
        channel: any Channel, upgradeRequest: HTTPRequestHead, initialResponseHeaders: HTTPHeaders
    )
        -> EventLoopFuture<HTTPHeaders>
    {
        guard hooks.authorize(upgradeRequest), let target = Target(upgradeRequest) else {
            return channel.eventLoop.makeFailedFuture(TestbedError("upgrade declined"))
        }
        hooks.record(upgradeRequest)
        var headers = initialResponseHeaders
        headers.add(name: "X-Stream-Protocol-Version", value: target.protocolVersion)
        return channel.eventLoop.makeSucceededFuture(headers)
    }

    func upgrade(context: ChannelHandlerContext, upgradeRequest: HTTPRequestHead) -> EventLoopFuture<Void> {
        context.eventLoop.makeCompletedFuture {
            let pipeline = context.pipeline.syncOperations
            switch Target(upgradeRequest) {
            case .exec:
                try StandInUpgrades.addSPDYSession(
                    SPDYExecSession(uri: upgradeRequest.uri, recordSession: hooks.recordSession), to: pipeline)
            case .portForward:
                try StandInUpgrades.addSPDYSession(
                    SPDYPortForwardSession(transport: "SPDY/3.1", hooks: hooks), to: pipeline)
            case .rawEcho, nil:
                try pipeline.addHandler(EchoHandler())
            }
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

/// One exec/attach session over the channel protocol, running a `StandInCommand`.
private final class ChannelProtocolSession: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    private var command: StandInCommand
    private let transport: String
    private let recordSession: @Sendable (StandInUpgrades.SessionRecord) -> Void
    private var recorded = false

    init(uri: String, transport: String, recordSession: @escaping @Sendable (StandInUpgrades.SessionRecord) -> Void) {
        self.command = StandInCommand(uri: uri)
        self.transport = transport
        self.recordSession = recordSession
    }

    func handlerAdded(context: ChannelHandlerContext) {
        carryOut(command.start(), context: context)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.opcode {
        case .binary:
            var payload = frame.unmaskedData
            guard let streamByte = payload.readInteger(as: UInt8.self) else { return }
            let bytes = Array(payload.readableBytesView)
            switch StandInUpgrades.Stream(rawValue: streamByte) {
            case .stdin:
                carryOut(command.receive(stdin: bytes), context: context)
            case .close where bytes.first == StandInUpgrades.Stream.stdin.rawValue:
                carryOut(command.stdinClosed(), context: context)
            default:
                break
            }
        case .connectionClose:
            record()
            context.close(promise: nil)
        case .ping:
            context.writeAndFlush(
                wrapOutboundOut(WebSocketFrame(fin: true, opcode: .pong, data: frame.unmaskedData)), promise: nil)
        default:
            break
        }
    }

    private func carryOut(_ outputs: [StandInCommand.Output], context: ChannelHandlerContext) {
        for output in outputs {
            switch output {
            case .stdout(let bytes): send(.stdout, bytes, context: context)
            case .stderr(let bytes): send(.stderr, bytes, context: context)
            case .exit(let code): finish(context: context, exitCode: code)
            }
        }
    }

    private func record() {
        guard !recorded else { return }
        recorded = true
        recordSession(command.record(transport: transport))
    }

    private func send(_ stream: StandInUpgrades.Stream, _ bytes: [UInt8], context: ChannelHandlerContext) {
        var buffer = context.channel.allocator.buffer(capacity: bytes.count + 1)
        buffer.writeInteger(stream.rawValue)
        buffer.writeBytes(bytes)
        context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .binary, data: buffer)), promise: nil)
    }

    private func finish(context: ChannelHandlerContext, exitCode: Int) {
        record()
        send(.error, Array(StandInCommand.status(exitCode: exitCode).utf8), context: context)
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

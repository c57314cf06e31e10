import NIOCore
import NIOPosix

/// kubelet's side of `portforward` over SPDY (`portforward.k8s.io`), plain or tunnelled in a
/// WebSocket. Each forwarded connection is a pair of streams the client opens with the same
/// `requestid` and `port` headers: an error stream, then a data stream. The data stream is
/// connected to `127.0.0.1:<port>` (where a test runs its own server, standing in for the
/// pod) and bytes are pumped both ways. When the client finishes the data stream the socket's
/// output is shut; when the socket closes, both streams are finished. A port that refuses the
/// connection is reported on the error stream, as kubelet does.
final class SPDYPortForwardSession: SPDYStreamService {
    private struct Forward {
        var port: Int
        var errorStream: UInt32?
        var dataStream: UInt32?
        var socket: (any Channel)?
        /// Bytes from the client that arrived before the socket connected.
        var pending: [ByteBuffer] = []
        var clientFinished = false
    }

    private let transport: String
    private let hooks: StandInUpgrades.Hooks
    private var forwards: [String: Forward] = [:]
    private var requestOfStream: [UInt32: String] = [:]
    private weak var connection: SPDYConnectionHandler?

    init(transport: String, hooks: StandInUpgrades.Hooks) {
        self.transport = transport
        self.hooks = hooks
    }

    func opened(_ stream: UInt32, headers: [String: String], connection: SPDYConnectionHandler) {
        self.connection = connection
        guard let requestID = headers["requestid"], let port = headers["port"].flatMap({ Int($0) }) else {
            connection.finish(stream)
            return
        }
        requestOfStream[stream] = requestID
        var forward = forwards[requestID] ?? Forward(port: port)
        switch headers["streamtype"] {
        case "error":
            forward.errorStream = stream
        case "data":
            forward.dataStream = stream
            forwards[requestID] = forward
            hooks.recordForward(StandInUpgrades.ForwardRecord(port: port, requestID: requestID, transport: transport))
            if let eventLoop = connection.eventLoop { connect(requestID, port: port, eventLoop: eventLoop) }
            return
        default:
            connection.finish(stream)
        }
        forwards[requestID] = forward
    }

    func received(_ bytes: ByteBuffer, on stream: UInt32, connection: SPDYConnectionHandler) {
        guard let requestID = requestOfStream[stream], stream == forwards[requestID]?.dataStream else { return }
        if let socket = forwards[requestID]?.socket {
            socket.writeAndFlush(bytes, promise: nil)
        } else {
            forwards[requestID]?.pending.append(bytes)
        }
    }

    func remoteClosed(_ stream: UInt32, reset: Bool, connection: SPDYConnectionHandler) {
        guard let requestID = requestOfStream[stream], stream == forwards[requestID]?.dataStream else { return }
        forwards[requestID]?.clientFinished = true
        if let socket = forwards[requestID]?.socket {
            socket.close(mode: reset ? .all : .output, promise: nil)
        }
    }

    func connectionEnded() {
        for forward in forwards.values { forward.socket?.close(promise: nil) }
        forwards = [:]
    }

    private func connect(_ requestID: String, port: Int, eventLoop: any EventLoop) {
        // The socket lives on the connection's event loop, so its events reach this session
        // without hopping.
        let session = NIOLoopBound(self, eventLoop: eventLoop)
        ClientBootstrap(group: eventLoop)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        ForwardedSocketHandler(requestID: requestID, session: session.value))
                }
            }
            .connect(host: "127.0.0.1", port: port)
            .whenComplete { result in session.value.connected(requestID, result) }
    }

    private func connected(_ requestID: String, _ result: Result<any Channel, any Error>) {
        guard var forward = forwards[requestID] else {
            if case .success(let socket) = result { socket.close(promise: nil) }
            return
        }
        switch result {
        case .success(let socket):
            for bytes in forward.pending { socket.write(bytes, promise: nil) }
            socket.flush()
            forward.pending = []
            forward.socket = socket
            if forward.clientFinished { socket.close(mode: .output, promise: nil) }
            forwards[requestID] = forward
        case .failure(let error):
            if let errorStream = forward.errorStream {
                connection?.send(
                    Array("error forwarding port \(forward.port) to pod: \(error)".utf8), on: errorStream)
            }
            end(requestID)
        }
    }

    fileprivate func socketRead(_ requestID: String, _ bytes: ByteBuffer) {
        guard let stream = forwards[requestID]?.dataStream else { return }
        connection?.send(bytes, on: stream)
    }

    /// The socket closed: the forwarded connection is over.
    fileprivate func end(_ requestID: String) {
        guard let forward = forwards.removeValue(forKey: requestID) else { return }
        for stream in [forward.dataStream, forward.errorStream].compactMap({ $0 }) {
            connection?.finish(stream)
            requestOfStream[stream] = nil
        }
    }
}

/// The stand-in's socket to the forwarded port: what it reads goes to the data stream.
private final class ForwardedSocketHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private let requestID: String
    private let session: SPDYPortForwardSession

    init(requestID: String, session: SPDYPortForwardSession) {
        self.requestID = requestID
        self.session = session
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        session.socketRead(requestID, unwrapInboundIn(data))
    }

    func channelInactive(context: ChannelHandlerContext) {
        session.end(requestID)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

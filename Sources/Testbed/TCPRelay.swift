import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// A TCP relay on loopback to another loopback port, which a test can make hold the connections
/// it accepts: a held connection is open (the client's `connect` succeeds) but nothing it sends
/// is read or passed on, so a TLS handshake through it stalls at its first flight, until
/// `release()`. A test uses it to act inside the window while a connection opens. It copies
/// bytes without backpressure or half-closure: for handshakes and small exchanges, not bulk.
public final class TCPRelay: Sendable {
    private struct State {
        var holding = false
        var held: [any Channel] = []
        var accepted = 0
        /// Every connection accepted or dialled, for `stop()`.
        var open: [any Channel] = []
        var stopped = false
    }

    private let channel: any Channel
    private let state: NIOLockedValueBox<State>
    private let targetPort: Int
    public let port: Int

    private init(channel: any Channel, state: NIOLockedValueBox<State>, targetPort: Int) {
        self.channel = channel
        self.state = state
        self.targetPort = targetPort
        self.port = channel.localAddress?.port ?? 0
    }

    public static func start(to targetPort: Int) async throws -> TCPRelay {
        let state = NIOLockedValueBox(State())
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.autoRead, value: false)
            .childChannelInitializer { client in
                client.eventLoop.makeCompletedFuture {
                    let forward = Forward(to: nil)
                    forward.onActive = { client in
                        let hold = state.withLockedValue { state in
                            state.accepted += 1
                            state.open.append(client)
                            if state.holding { state.held.append(client) }
                            return state.holding || state.stopped
                        }
                        if !hold { dial(for: client, port: targetPort, state: state) }
                    }
                    try client.pipeline.syncOperations.addHandler(forward)
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        return TCPRelay(channel: channel, state: state, targetPort: targetPort)
    }

    /// Connections accepted from now on are held.
    public func hold() {
        state.withLockedValue { $0.holding = true }
    }

    /// Relays the held connections, and those accepted from now on.
    public func release() {
        let held = state.withLockedValue { state in
            state.holding = false
            defer { state.held.removeAll() }
            return state.held
        }
        for client in held {
            client.eventLoop.execute { Self.dial(for: client, port: self.targetPort, state: self.state) }
        }
    }

    /// Connections accepted so far, held or relayed.
    public var acceptedConnections: Int { state.withLockedValue { $0.accepted } }

    /// Connections accepted while holding and not yet released.
    public var heldConnections: Int { state.withLockedValue { $0.held.count } }

    /// Closes the listener and every connection it accepted or dialled, held ones included.
    public func stop() async {
        try? await channel.close()
        let open = state.withLockedValue { state in
            state.stopped = true
            state.held.removeAll()
            return state.open
        }
        for connection in open { try? await connection.close() }
    }

    /// Opens the relayed side of `client`, then starts reading `client`. On `client`'s event loop.
    private static func dial(for client: any Channel, port: Int, state: NIOLockedValueBox<State>) {
        guard client.isActive, !state.withLockedValue(\.stopped) else { return }
        ClientBootstrap(group: client.eventLoop)
            .channelInitializer { target in
                target.eventLoop.makeCompletedFuture {
                    try target.pipeline.syncOperations.addHandler(Forward(to: client))
                }
            }
            .connect(host: "127.0.0.1", port: port)
            .whenComplete { result in
                switch result {
                case .success(let target):
                    state.withLockedValue { $0.open.append(target) }
                    let forward = try? client.pipeline.syncOperations.handler(type: Forward.self)
                    forward?.peer = target
                    client.closeFuture.whenComplete { _ in target.close(promise: nil) }
                    client.setOption(.autoRead, value: true).whenComplete { _ in client.read() }
                case .failure:
                    client.close(promise: nil)
                }
            }
    }

    /// Writes what one side reads to the other, and closes the other when this side closes.
    private final class Forward: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer

        var peer: (any Channel)?
        /// For an accepted connection: what to do once it is active.
        var onActive: ((any Channel) -> Void)?

        init(to peer: (any Channel)?) {
            self.peer = peer
        }

        func channelActive(context: ChannelHandlerContext) {
            onActive?(context.channel)
            context.fireChannelActive()
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            peer?.writeAndFlush(unwrapInboundIn(data), promise: nil)
        }

        func channelInactive(context: ChannelHandlerContext) {
            peer?.close(promise: nil)
            context.fireChannelInactive()
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            context.close(promise: nil)
        }
    }
}

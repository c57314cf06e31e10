import AsyncHTTPClient
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHPACK
import NIOHTTP2
import NIOPosix
import NIOSSL
import Synchronization
import Testbed
import Testing

@testable import Gateway

extension ProxyHarness {
    /// TLS for a client of the proxy's HTTPS listener that offers only h2.
    func http2ClientTLS() throws -> NIOSSLContext {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.trustRoots = .certificates(
            try NIOSSLCertificate.fromPEMBytes(Array(try #require(serving).authority.certificatePEM.utf8)))
        tls.certificateVerification = .noHostnameVerification
        tls.applicationProtocols = ["h2"]
        return try NIOSSLContext(configuration: tls)
    }

    /// A request's header block (a GET's unless told), as an HTTP/2 client sends it.
    func requestBlock(_ path: String, token: String, method: String = "GET") -> HPACKHeaders {
        [
            ":method": method, ":scheme": "https", ":path": path, ":authority": "127.0.0.1:\(port)",
            "authorization": "Bearer \(token)",
        ]
    }
}

/// An HTTP/2 client over TLS that sends the header blocks it is given, unchecked (NIO's own
/// checks are off on this side), one stream per request, and records what comes back.
final class RawHTTP2Client: Sendable {
    private let channel: any Channel
    private let multiplexer: NIOHTTP2Handler.StreamMultiplexer
    private let state: NIOLockedValueBox<(closed: Bool, goAway: Bool)>

    private init(
        channel: any Channel, multiplexer: NIOHTTP2Handler.StreamMultiplexer,
        state: NIOLockedValueBox<(closed: Bool, goAway: Bool)>
    ) {
        self.channel = channel
        self.multiplexer = multiplexer
        self.state = state
    }

    var isClosed: Bool { state.withLockedValue { $0.closed } }
    var goAwayReceived: Bool { state.withLockedValue { $0.goAway } }

    static func connect(_ harness: ProxyHarness) async throws -> RawHTTP2Client {
        let context = try harness.http2ClientTLS()
        let state = NIOLockedValueBox((closed: false, goAway: false))
        let (channel, multiplexer) = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        NIOSSLClientHandler(context: context, serverHostname: nil))
                }
            }
            .connect(host: "127.0.0.1", port: harness.port)
            .flatMap { channel in
                channel.eventLoop.makeCompletedFuture {
                    var configuration = NIOHTTP2Handler.ConnectionConfiguration()
                    configuration.headerBlockValidation = .disabled
                    let multiplexer = try channel.pipeline.syncOperations.configureHTTP2Pipeline(
                        mode: .client, connectionConfiguration: configuration, streamConfiguration: .init()
                    ) { stream in stream.eventLoop.makeSucceededVoidFuture() }
                    try channel.pipeline.syncOperations.addHandler(GoAwayWatcher(state: state))
                    channel.closeFuture.whenComplete { _ in state.withLockedValue { $0.closed = true } }
                    return (channel, multiplexer)
                }
            }.get()
        return RawHTTP2Client(channel: channel, multiplexer: multiplexer, state: state)
    }

    /// Opens a stream and sends `block`, then `body` in a DATA frame if there is one, as its
    /// complete request.
    func open(_ block: HPACKHeaders, body: [UInt8] = []) async throws -> RawHTTP2Stream {
        let recorder = StreamRecorder()
        let stream = try await multiplexer.createStreamChannel { stream in
            stream.eventLoop.makeCompletedFuture { try stream.pipeline.syncOperations.addHandler(recorder) }
        }.get()
        try await stream.writeAndFlush(HTTP2Frame.FramePayload.headers(.init(headers: block, endStream: body.isEmpty)))
        if !body.isEmpty {
            let data = HTTP2Frame.FramePayload.Data(data: .byteBuffer(ByteBuffer(bytes: body)), endStream: true)
            try await stream.writeAndFlush(HTTP2Frame.FramePayload.data(data))
        }
        return RawHTTP2Stream(channel: stream, recorder: recorder)
    }

    func close() async {
        try? await channel.close()
    }
}

/// One stream of a `RawHTTP2Client`.
struct RawHTTP2Stream: Sendable {
    let channel: any Channel
    fileprivate let recorder: StreamRecorder

    /// The response's `:status`, or nil when the stream ended (reset) without one.
    func status() async throws -> String? {
        try await recorder.head.futureResult.get()
    }

    /// The response body, once the stream ends.
    func body() async throws -> String {
        try await recorder.ended.futureResult.get()
        return String(decoding: recorder.bodyBytes, as: UTF8.self)
    }

    /// Resets the stream (RST_STREAM CANCEL), as a client cancelling a request does.
    func reset() {
        channel.close(promise: nil)
    }
}

private final class StreamRecorder: ChannelInboundHandler, Sendable {
    typealias InboundIn = HTTP2Frame.FramePayload
    let head: EventLoopPromise<String?>
    let ended: EventLoopPromise<Void>
    private let body = NIOLockedValueBox<[UInt8]>([])
    /// Whether `head` and `ended` are complete (each is completed once).
    private let completed = NIOLockedValueBox((head: false, ended: false))

    init() {
        let loop = MultiThreadedEventLoopGroup.singleton.any()
        head = loop.makePromise()
        ended = loop.makePromise()
    }

    var bodyBytes: [UInt8] { body.withLockedValue { $0 } }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .headers(let headers):
            answerHead(headers.headers.first(name: ":status"))
            if headers.endStream { end() }
        case .data(let data):
            if case .byteBuffer(let buffer) = data.data {
                body.withLockedValue { $0 += Array(buffer.readableBytesView) }
            }
            if data.endStream { end() }
        default:
            break
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        answerHead(nil)
        end()
        context.fireChannelInactive()
    }

    /// A stream whose HEADERS could not be sent is removed without going inactive.
    func handlerRemoved(context: ChannelHandlerContext) {
        answerHead(nil)
        end()
    }

    /// One never added to a stream (the connection had closed): a failed test, not a crash of
    /// every test in the process.
    deinit {
        answerHead(nil)
        end()
    }

    private func answerHead(_ status: String?) {
        let first = completed.withLockedValue { state in
            defer { state.head = true }
            return !state.head
        }
        if first { head.succeed(status) }
    }

    private func end() {
        let first = completed.withLockedValue { state in
            defer { state.ended = true }
            return !state.ended
        }
        if first { ended.succeed() }
    }
}

private final class GoAwayWatcher: ChannelInboundHandler, Sendable {
    typealias InboundIn = HTTP2Frame
    private let state: NIOLockedValueBox<(closed: Bool, goAway: Bool)>

    init(state: NIOLockedValueBox<(closed: Bool, goAway: Bool)>) {
        self.state = state
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .goAway = unwrapInboundIn(data).payload { state.withLockedValue { $0.goAway = true } }
    }
}

/// An HTTP/2 client working in frames, with no flow-control help from NIO: it sends what it is
/// told and grants only the window it is told to grant.
final class FrameLevelHTTP2Client: Sendable {
    let channel: any Channel
    private let received: NIOLockedValueBox<[HTTP2Frame]>

    private init(channel: any Channel, received: NIOLockedValueBox<[HTTP2Frame]>) {
        self.channel = channel
        self.received = received
    }

    var frames: [HTTP2Frame] { received.withLockedValue { $0 } }

    /// Whether a GOAWAY with `code` has arrived.
    func receivedGoAway(_ code: HTTP2ErrorCode) -> Bool {
        frames.contains { frame in
            if case .goAway(_, code, _) = frame.payload { return true }
            return false
        }
    }

    /// The error codes of the RST_STREAM frames received for `id`.
    func resets(_ id: HTTP2StreamID) -> [HTTP2ErrorCode] {
        frames.compactMap { frame in
            guard frame.streamID == id, case .rstStream(let code) = frame.payload else { return nil }
            return code
        }
    }

    /// Waits until `count` streams have been reset, or the connection has closed.
    func waitForResets(_ count: Int) async throws {
        let done = try await eventually(timeout: .seconds(5)) { !channel.isActive || resetCount >= count }
        #expect(done, "\(resetCount) streams reset of \(count)")
    }

    /// RST_STREAM frames received, for any stream.
    var resetCount: Int {
        frames.filter { frame in
            guard case .rstStream = frame.payload else { return false }
            return true
        }.count
    }

    /// The `:status` of the response HEADERS received for `id`, if one has arrived.
    func status(_ id: HTTP2StreamID) -> String? {
        frames.lazy.compactMap { frame -> String? in
            guard frame.streamID == id, case .headers(let headers) = frame.payload else { return nil }
            return headers.headers.first(name: ":status")
        }.first
    }

    /// Whether a HEADERS frame (a response) has arrived.
    var receivedHeaders: Bool {
        frames.contains { frame in
            guard case .headers = frame.payload else { return false }
            return true
        }
    }

    /// - Parameter checkingHeaderBlocks: false sends header blocks NIO would refuse to send.
    static func connect(
        _ harness: ProxyHarness, settings: HTTP2Settings, checkingHeaderBlocks: Bool = true
    ) async throws -> FrameLevelHTTP2Client {
        let context = try harness.http2ClientTLS()
        let received = NIOLockedValueBox<[HTTP2Frame]>([])
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let pipeline = channel.pipeline.syncOperations
                    try pipeline.addHandler(NIOSSLClientHandler(context: context, serverHostname: nil))
                    var connection = NIOHTTP2Handler.ConnectionConfiguration()
                    connection.initialSettings = settings
                    connection.headerBlockValidation = checkingHeaderBlocks ? .enabled : .disabled
                    // The server's resets are what the tests count: this side does not give up on
                    // the connection after NIO's 200.
                    var streams = NIOHTTP2Handler.StreamConfiguration()
                    streams.streamResetFrameRateLimit.maximumCount = 10_000
                    try pipeline.addHandler(
                        NIOHTTP2Handler(
                            mode: .client, connectionConfiguration: connection, streamConfiguration: streams))
                    try pipeline.addHandler(FrameRecorder(received: received))
                }
            }
            .connect(host: "127.0.0.1", port: harness.port).get()
        return FrameLevelHTTP2Client(channel: channel, received: received)
    }

    func send(_ frame: HTTP2Frame) async throws {
        try await channel.writeAndFlush(frame)
    }

    /// Writes `bytes` under the HTTP/2 handler, straight into the TLS connection.
    func sendRaw(_ bytes: [UInt8]) async throws {
        let channel = self.channel
        try await channel.eventLoop.flatSubmit {
            do {
                let context = try channel.pipeline.syncOperations.context(handlerType: NIOHTTP2Handler.self)
                return context.writeAndFlush(NIOAny(ByteBuffer(bytes: bytes)))
            } catch {
                return channel.eventLoop.makeFailedFuture(error)
            }
        }.get()
    }

    /// Writes all of `frames` and flushes once: they leave in as few TLS records as fit.
    func sendBatch(_ frames: [HTTP2Frame]) async throws {
        let channel = self.channel
        try await channel.eventLoop.flatSubmit {
            let written = frames.map { channel.write($0) }
            channel.flush()
            return EventLoopFuture.andAllSucceed(written, on: channel.eventLoop)
        }.get()
    }

    func close() async {
        try? await channel.close()
    }
}

private final class FrameRecorder: ChannelInboundHandler, Sendable {
    typealias InboundIn = HTTP2Frame
    private let received: NIOLockedValueBox<[HTTP2Frame]>

    init(received: NIOLockedValueBox<[HTTP2Frame]>) {
        self.received = received
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var frame = unwrapInboundIn(data)
        // Bodies are counted, not kept.
        if case .data(var data) = frame.payload, case .byteBuffer(let buffer) = data.data {
            data.data = .byteBuffer(ByteBuffer(repeating: 0, count: min(buffer.readableBytes, 1)))
            frame.payload = .data(data)
        }
        received.withLockedValue { $0.append(frame) }
    }
}

/// A TLS server on loopback that answers every request head it reads with the same bytes,
/// written as they are: for what NIO's HTTP/1.1 encoder would not send. With `closing`, it
/// closes the connection right after the answer, in the same write.
final class RawTLSResponder: Sendable {
    private let channel: any Channel
    let port: Int

    private init(channel: any Channel) {
        self.channel = channel
        self.port = channel.localAddress?.port ?? 0
    }

    static func start(identity: ServerIdentity, response: String, closing: Bool = false) async throws
        -> RawTLSResponder
    {
        let context = try NIOSSLContext(configuration: identity.serverTLSConfiguration())
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: context))
                    try channel.pipeline.syncOperations.addHandler(Responder(response: response, closing: closing))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        return RawTLSResponder(channel: channel)
    }

    func stop() async {
        try? await channel.close()
    }

    private final class Responder: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        private let response: String
        private let closing: Bool
        private var received: [UInt8] = []

        init(response: String, closing: Bool) {
            self.response = response
            self.closing = closing
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            received += unwrapInboundIn(data).readableBytesView
            let endOfHead = Array("\r\n\r\n".utf8)
            while let end = received.firstRange(of: endOfHead) {
                received.removeSubrange(..<end.upperBound)
                context.write(wrapOutboundOut(ByteBuffer(string: response)), promise: nil)
                if closing {
                    context.flush()
                    context.close(promise: nil)
                    return
                }
            }
        }

        func channelReadComplete(context: ChannelHandlerContext) {
            context.flush()
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            context.close(promise: nil)
        }
    }
}

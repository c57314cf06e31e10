import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOHTTP2
import NIOPosix
import NIOSSL
import NIOWebSocket
import SwiftASN1
import Synchronization
import X509

/// A request as a stand-in server received it, body included.
public struct ReceivedRequest: Sendable {
    public var method: String
    public var uri: String
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]
    /// Which connection it came on: equal numbers, same connection (HTTP/2 streams of one
    /// connection share its number).
    public var connection: Int
    /// 1 for HTTP/1.x, 2 for a stream of an HTTP/2 connection.
    public var httpMajorVersion = 1
    /// The subject of the TLS client certificate the connection presented (`CN=...`), if any.
    public var clientCertificateSubject: String?

    /// Every value of header `name` (case-insensitive), in order.
    public func values(_ name: String) -> [String] {
        headers.filter { $0.name.lowercased() == name.lowercased() }.map(\.value)
    }

    /// The path of the target. An absolute-form target (`http://host/path`) is routed by its
    /// path, as kube-apiserver (Go's net/http) routes it.
    public var path: Substring {
        var target = uri[...]
        for scheme in ["http://", "https://"] where target.lowercased().hasPrefix(scheme) {
            target = target.dropFirst(scheme.count).drop { $0 != "/" && $0 != "?" }
        }
        return target.prefix { $0 != "?" }
    }
}

/// Writes one response from any thread: each call is sent to the connection's channel.
public struct ResponseWriter: Sendable {
    let channel: any Channel
    let keepAlive: Bool
    /// Close after the response without a `Connection: close` header.
    var silently = false

    init(channel: any Channel, keepAlive: Bool, silently: Bool = false) {
        self.channel = channel
        self.keepAlive = keepAlive
        self.silently = silently
    }

    public func head(_ status: HTTPResponseStatus, headers: [(String, String)] = []) {
        var fields = HTTPHeaders(headers)
        if !keepAlive && !silently { fields.replaceOrAdd(name: "Connection", value: "close") }
        channel.write(
            HTTPServerResponsePart.head(HTTPResponseHead(version: .http1_1, status: status, headers: fields)),
            promise: nil)
    }

    public func body(_ bytes: [UInt8], flush: Bool = true) {
        var buffer = channel.allocator.buffer(capacity: bytes.count)
        buffer.writeBytes(bytes)
        channel.write(HTTPServerResponsePart.body(.byteBuffer(buffer)), promise: nil)
        if flush { channel.flush() }
    }

    public func body(_ text: String, flush: Bool = true) {
        body(Array(text.utf8), flush: flush)
    }

    /// Ends the response; the future completes once it is written.
    @discardableResult
    public func end() -> EventLoopFuture<Void> {
        let future = channel.writeAndFlush(HTTPServerResponsePart.end(nil))
        if !keepAlive { future.whenComplete { [channel] _ in channel.close(promise: nil) } }
        return future
    }

    /// A complete response with a body and Content-Length.
    public func respond(_ status: HTTPResponseStatus, contentType: String = "application/json", _ text: String) {
        head(status, headers: [("Content-Type", contentType), ("Content-Length", String(text.utf8.count))])
        body(text, flush: false)
        end()
    }

    /// Closes the connection abruptly, without finishing the response.
    public func abort() {
        channel.close(promise: nil)
    }
}

/// A small HTTPS (or HTTP) server on loopback that hands each complete request to `handler`.
public final class TestHTTPServer: Sendable {
    public typealias Handler = @Sendable (ReceivedRequest, ResponseWriter) -> Void
    /// Makes the protocol upgraders for one new connection.
    public typealias Upgraders = @Sendable () -> [any HTTPServerProtocolUpgrader]

    private let channel: any Channel
    public let port: Int

    private init(channel: any Channel, port: Int) {
        self.channel = channel
        self.port = port
    }

    /// Starts listening on 127.0.0.1 at `port` (0: any free port).
    /// - Parameters:
    ///   - http2: offer HTTP/2 by ALPN (with TLS), as kube-apiserver does; each stream is one
    ///     request, and upgrades stay on HTTP/1.1.
    ///   - http2MaximumStreams: the SETTINGS_MAX_CONCURRENT_STREAMS it announces.
    ///   - http2FlowControl: where to record the flow-control frames HTTP/2 clients send.
    public static func start(
        tls: TLSConfiguration?, port: Int = 0, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        http2: Bool = false, http2MaximumStreams: Int = 100,
        http2FlowControl: NIOLockedValueBox<HTTP2FlowControlLog>? = nil, upgraders: Upgraders? = nil,
        handler: @escaping Handler
    ) async throws -> TestHTTPServer {
        let connectionConfiguration = {
            var configuration = NIOHTTP2Handler.ConnectionConfiguration()
            configuration.initialSettings = nioDefaultSettings.map { setting in
                setting.parameter == .maxConcurrentStreams
                    ? HTTP2Setting(parameter: .maxConcurrentStreams, value: http2MaximumStreams) : setting
            }
            return configuration
        }()
        // Go's HTTP/2 server (kube-apiserver's) does not count the streams a client resets, as
        // NIO's does by default (200 in 30 s, then the connection is closed): a proxy cancels a
        // stream for every watch whose client leaves, and many leave at once.
        let streamConfiguration = {
            var configuration = NIOHTTP2Handler.StreamConfiguration()
            configuration.streamResetFrameRateLimit.maximumCount = Int(Int32.max)
            return configuration
        }()
        var tls = tls
        if http2 { tls?.applicationProtocols = ["h2", "http/1.1"] }
        let sslContext = try tls.map { try NIOSSLContext(configuration: $0) }
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                guard http2, let sslContext else {
                    return channel.eventLoop.makeCompletedFuture {
                        try configureHTTP1(channel, sslContext: sslContext, upgraders: upgraders, handler: handler)
                    }
                }
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: sslContext))
                }.flatMap {
                    channel.configureHTTP2SecureUpgrade(
                        h2ChannelConfigurator: { channel in
                            let connection = CollectingHandler.nextConnection.add(1, ordering: .relaxed).newValue
                            return channel.eventLoop.makeCompletedFuture {
                                if let http2FlowControl {
                                    try channel.pipeline.syncOperations.addHandler(
                                        HTTP2FlowControlRecorder(log: http2FlowControl))
                                }
                                _ = try channel.pipeline.syncOperations.configureHTTP2Pipeline(
                                    mode: .server, connectionConfiguration: connectionConfiguration,
                                    streamConfiguration: streamConfiguration
                                ) { stream in
                                    stream.eventLoop.makeCompletedFuture {
                                        try stream.pipeline.syncOperations.addHandler(
                                            HTTP2FramePayloadToHTTP1ServerCodec())
                                        try stream.pipeline.syncOperations.addHandler(
                                            CollectingHandler(handler: handler, connection: connection))
                                    }
                                }
                            }
                        },
                        http1ChannelConfigurator: { channel in
                            channel.eventLoop.makeCompletedFuture {
                                try configureHTTP1(channel, sslContext: nil, upgraders: upgraders, handler: handler)
                            }
                        })
                }
            }
            .bind(host: "127.0.0.1", port: port).get()
        return TestHTTPServer(channel: channel, port: channel.localAddress?.port ?? port)
    }

    private static func configureHTTP1(
        _ channel: any Channel, sslContext: NIOSSLContext?, upgraders: Upgraders?, handler: @escaping Handler
    ) throws {
        if let sslContext {
            try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: sslContext))
        }
        let collecting = CollectingHandler(handler: handler)
        if let upgraders {
            // Once upgraded, the request collector must leave: frames are not HTTP.
            try channel.pipeline.syncOperations.configureHTTPServerPipeline(
                withServerUpgrade: (
                    upgraders: upgraders(),
                    completionHandler: { context in
                        let pipeline = context.pipeline.syncOperations
                        if let collecting = try? pipeline.handler(type: CollectingHandler.self) {
                            pipeline.removeHandler(collecting, promise: nil)
                        }
                    }
                ))
        } else {
            try channel.pipeline.syncOperations.configureHTTPServerPipeline()
        }
        try channel.pipeline.syncOperations.addHandler(collecting)
    }

    public func stop() async {
        try? await channel.close()
    }
}

/// Collects a request's body, then calls the handler.
private final class CollectingHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart

    private let handler: TestHTTPServer.Handler
    private let connection: Int
    static let nextConnection = Atomic<Int>(0)
    private var head: HTTPRequestHead?
    private var body: [UInt8] = []

    init(handler: @escaping TestHTTPServer.Handler, connection: Int? = nil) {
        self.handler = handler
        self.connection = connection ?? CollectingHandler.nextConnection.add(1, ordering: .relaxed).newValue
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
            body = []
            if head.version == .http1_1,
                head.headers[canonicalForm: "expect"].contains(where: { $0.lowercased() == "100-continue" })
            {
                // As Go's server (kube-apiserver's) does once a handler reads the body, and
                // every handler here reads it first.
                let proceed = HTTPServerResponsePart.head(HTTPResponseHead(version: .http1_1, status: .continue))
                context.writeAndFlush(NIOAny(proceed), promise: nil)
            }
        case .body(var buffer):
            body += buffer.readBytes(length: buffer.readableBytes) ?? []
        case .end:
            guard let head else { return }
            var request = ReceivedRequest(
                method: head.method.rawValue, uri: head.uri, headers: head.headers.map { ($0.name, $0.value) },
                body: body, connection: connection)
            request.httpMajorVersion = head.version.major
            request.clientCertificateSubject = Self.clientCertificateSubject(context.channel)
            self.head = nil
            body = []
            // An HTTP/2 stream ends with its response; its connection goes on.
            let keepAlive = head.version.major >= 2 || head.isKeepAlive
            handler(request, ResponseWriter(channel: context.channel, keepAlive: keepAlive))
        }
    }

    /// The subject of the client certificate on `channel`'s TLS connection: the channel's own,
    /// or for an HTTP/2 stream its parent's (an HTTP/1 channel's parent is the listening socket,
    /// maybe on another event loop).
    private static func clientCertificateSubject(_ channel: any Channel) -> String? {
        func peerCertificate(_ channel: any Channel) -> NIOSSLCertificate? {
            guard channel.eventLoop.inEventLoop else { return nil }
            return try? channel.pipeline.syncOperations.nioSSL_peerCertificate()
        }
        guard let certificate = peerCertificate(channel) ?? channel.parent.flatMap(peerCertificate),
            let decoded = try? Certificate(derEncoded: certificate.toDERBytes())
        else { return nil }
        return String(describing: decoded.subject)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // A declined upgrade is reported as an error, then served as an ordinary request.
        if error is NIOWebSocketUpgradeError || error is TestbedError { return }
        context.close(promise: nil)
    }
}

import FoundationEssentials
import Issuers
import Logging
import NIOCore
import NIOHTTP1
import Synchronization

/// Serves one client connection: answers health paths locally, authenticates every other
/// request, and relays it to the API server on a pooled connection of the same event loop,
/// streaming both bodies with backpressure (a side that cannot take bytes stops the other's reads).
///
/// Requests are served one at a time, in order. A request the client pipelines behind one still
/// in progress waits, with its parts, in `queued` (and the connection is not read meanwhile)
/// until the exchange before it is finished. This handler does that itself, rather than NIO's
/// `HTTPServerPipelineHandler`, which stops and restarts reading the socket around every
/// response: two `epoll_ctl` calls per request for the clients that never pipeline.
final class ProxyHandler: ChannelDuplexHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    /// One request's progress from head to the end of its response.
    final class Exchange {
        /// The client's request head; its headers are let go once the response has begun.
        private(set) var head: HTTPRequestHead
        /// A request to switch protocols (exec, attach, port-forward): it gets a dedicated
        /// upstream connection, and its connection ends unless the answer is `101`.
        let isUpgrade: Bool
        /// A watch or a followed log: sent as an HTTP/2 stream where the API server allows.
        let isLongRunning: Bool
        let startedAt: ContinuousClock.Instant
        var identity: Identity?
        var upstreamHead: HTTPRequestHead?
        /// Body parts that arrived before the upstream connection was ready.
        var pendingBody: [ByteBuffer] = []
        var requestEnded = false
        var requestBodyBytes = 0
        var responseStarted = false
        var status: HTTPResponseStatus?
        var responseBytes = 0
        var connectionReused = false
        var retried = false
        var upstreamStartedAt: ContinuousClock.Instant?
        var upstreamLatency: Duration?
        /// The access-log line is written and the request metrics recorded: once per exchange.
        var recorded = false
        /// The request was refused in a way that leaves the connection unusable.
        var closesConnection = false
        /// Answered while its client waits for `100 Continue`: the body may never come, so the
        /// connection closes with the response instead of reading the body first.
        var abandonsBody = false
        /// The API server's `100 Continue` was relayed: the client no longer waits to send its body.
        var continued = false

        /// What the request's headers say about keeping the connection open, read before they go.
        private let clientKeepAlive: Bool

        init(head: HTTPRequestHead) {
            self.head = head
            self.isUpgrade = ImpersonationHeaders.isUpgradeRequest(head)
            self.isLongRunning = !isUpgrade && ProxyHandler.isLongRunning(head)
            self.clientKeepAlive = ProxyHandler.isKeepAlive(head)
            self.startedAt = .now
        }

        /// Whether the client connection may carry another request after this one. An upgrade
        /// request leaves the decoder expecting another protocol, so it never does.
        var keepAlive: Bool { clientKeepAlive && !isUpgrade && !closesConnection }

        /// Lets the request's headers and the upstream head go: once the response has begun,
        /// nothing sends the request again, and a watch or `logs -f` may last an hour. The
        /// method, target and version stay, for the access log.
        func responseBegan() {
            responseStarted = true
            upstreamHead = nil
            head.headers = HTTPHeaders()
        }

        /// Whether the request can be sent again on a new connection: nothing of its body was sent.
        var isReplayable: Bool {
            !retried && requestEnded && requestBodyBytes == 0 && !responseStarted
        }
    }

    enum State {
        /// Between requests.
        case idle
        /// Waiting for fresh signing keys before the token can be judged.
        case authenticating(Exchange)
        /// Authenticated; waiting for an upstream connection.
        case connecting(Exchange)
        /// Request and response flowing through `upstream`.
        case forwarding(Exchange, UpstreamConnection)
        /// A response was written locally; the rest of the request body is read and dropped.
        case draining(keepAlive: Bool)
        /// Switched protocols: the splice handlers carry the bytes; nothing here is HTTP any more.
        case spliced
        case closed
    }

    /// The request target without its query (a query can carry anything, a token included).
    /// Searched over the contiguous bytes: twice per request, and the generic walk of the UTF-8
    /// view cost some 700 instructions for a short target.
    static func path(of uri: String) -> Substring {
        let utf8 = uri.utf8
        // A string with no contiguous UTF-8 (a bridged one) is walked the slow way.
        let offset: Int? =
            utf8.withContiguousStorageIfAvailable { $0.firstIndex(of: UInt8(ascii: "?")) }
            ?? utf8.firstIndex(of: UInt8(ascii: "?")).map { utf8.distance(from: utf8.startIndex, to: $0) }
        guard let offset else { return uri[...] }
        return uri[..<utf8.index(utf8.startIndex, offsetBy: offset)]
    }

    /// Whether an HTTP/1.x client asked `Expect: 100-continue` and has not sent all of its body:
    /// answered now, it may skip the body, so the connection cannot be read on.
    static func awaitsContinue(_ head: HTTPRequestHead, requestEnded: Bool) -> Bool {
        !requestEnded && head.version.major < 2
            && head.headers[canonicalForm: "expect"].contains { $0.lowercased() == "100-continue" }
    }

    /// `awaitsContinue` for a request `exchange` carries (nil: refused before one began), which
    /// no longer waits once the API server's `100 Continue` has been relayed.
    private static func awaitsContinue(_ head: HTTPRequestHead, exchange: Exchange?) -> Bool {
        !(exchange?.continued ?? false) && awaitsContinue(head, requestEnded: exchange?.requestEnded ?? false)
    }

    /// Whether the client's connection carries more requests after `head`'s. An HTTP/2 stream
    /// ends with its response while the connection lives on, so it counts as kept alive.
    static func isKeepAlive(_ head: HTTPRequestHead) -> Bool {
        head.version.major >= 2 || head.isKeepAlive
    }

    private let gateway: GatewayContext
    /// The pass-through splice end at the front of this connection's pipeline; nil on an
    /// HTTP/2 stream, where there is no upgrading.
    private let clientSplice: SpliceHandler?
    private var state = State.idle
    /// Parts of requests pipelined behind the exchange in progress, from the first one's head on.
    private var queued = CircularBuffer<HTTPServerRequestPart>()
    private var deliveringQueued = false
    /// The server is shutting down: finish the exchange in progress, then close.
    private var quiescing = false
    /// Where responses go: this connection's pipeline, or one stream of an HTTP/2 connection.
    private var client: (any ClientEnd)?
    private var readPending = false
    /// Body bytes of an answered request read and dropped so far (`State.draining`).
    private var drainedBytes = 0
    /// As Go's HTTP server (kube-apiserver's) does, the unread body of an answered request is
    /// read and dropped up to 256 KiB; past that the connection closes rather than read on.
    static let maximumDrainedBytes = 256 * 1024
    /// The client half-closed after pipelining requests: serve them, then close. (Without
    /// requests queued, the exchange in progress is abandoned at once.)
    private var clientInputClosed = false
    /// Closes a connection that stays idle, or sends its next request head too slowly. Not used
    /// on an HTTP/2 stream, which exists because its head arrived and ends with its response.
    private var idleTimer: DeadlineTimer?
    /// Fails an exchange whose request was sent but whose response head is late.
    private var responseTimer: (any ExchangeDeadline)?
    private var clientAddress: String?

    init(gateway: GatewayContext, clientSplice: SpliceHandler?) {
        self.gateway = gateway
        self.clientSplice = clientSplice
        Self.liveInstances.add(1, ordering: .relaxed)
    }

    deinit {
        Self.liveInstances.subtract(1, ordering: .relaxed)
    }

    /// Handlers not yet freed, for the test that a closed connection leaves nothing behind.
    static let liveInstances = Atomic<Int>(0)

    func handlerAdded(context: ChannelHandlerContext) {
        start(serving: PipelineEnd(context), clientAddress: context.channel.remoteAddress?.clientIPAddress)
    }

    /// Starts serving `client`: an HTTP/1.1 connection (from `handlerAdded`), or an HTTP/2
    /// stream whose head is about to be delivered.
    func start(serving client: any ClientEnd, clientAddress: String?) {
        self.client = client
        self.clientAddress = clientAddress
        if clientSplice != nil {
            idleTimer = DeadlineTimer(eventLoop: client.eventLoop) { [weak self] in
                guard let self, case .idle = self.state else { return }
                self.gateway.logger.debug("closing a connection that sent no request in time")
                self.state = .closed
                self.client?.close()
            }
        }
        responseTimer = client.makeDeadline { [weak self] in
            guard let self, case .forwarding(let exchange, let upstream) = self.state, !exchange.responseStarted
            else { return }
            upstream.handler.close()
            self.upstreamFailed(exchange, .timedOut)
        }
        idleTimer?.set(after: gateway.requestHeadTimeout)
    }

    /// The context refers to this handler and this handler to the context: letting go of it
    /// here, with the timers, is what frees the handler, its pipeline and its timers once the
    /// connection is gone.
    func handlerRemoved(context: ChannelHandlerContext) {
        detach()
    }

    /// Lets go of the client end and the timers (which refer back to this handler).
    func detach() {
        idleTimer?.cancel()
        responseTimer?.cancel()
        idleTimer = nil
        responseTimer = nil
        client = nil
    }

    /// Starts the wait for the next request head after a response; a head (or the connection's
    /// end) stops it.
    private func armIdleTimeout() {
        idleTimer?.set(after: gateway.idleTimeout)
    }

    // MARK: Client → proxy

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        receive(unwrapInboundIn(data))
    }

    /// One part of a request from the client.
    func receive(_ part: HTTPServerRequestPart) {
        if !queued.isEmpty || (part.isHead && !isIdle) {
            switch state {
            case .closed, .spliced:
                break
            default:
                // Quiescing, only the exchange in progress is finished; what follows is dropped.
                if !quiescing { queued.append(part) }
            }
            return
        }
        deliver(part)
    }

    /// The exchange between its request head and the end of its response, if any.
    private var exchangeInProgress: Exchange? {
        switch state {
        case .authenticating(let exchange), .connecting(let exchange), .forwarding(let exchange, _): exchange
        case .idle, .draining, .spliced, .closed: nil
        }
    }

    private var isIdle: Bool {
        if case .idle = state { return true }
        return false
    }

    private func deliver(_ part: HTTPServerRequestPart) {
        switch part {
        case .head(let head):
            receiveHead(head)
        case .body(let body):
            receiveBody(body)
        case .end:
            receiveEnd()
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        clientReadComplete()
        context.fireChannelReadComplete()
    }

    /// The client's bytes read so far are delivered: send on what went upstream.
    func clientReadComplete() {
        if case .forwarding(_, let upstream) = state { upstream.handler.flush() }
    }

    func channelInactive(context: ChannelHandlerContext) {
        clientClosed()
        context.fireChannelInactive()
    }

    /// The client connection (or the HTTP/2 stream) is gone.
    func clientClosed() {
        idleTimer?.cancel()
        responseTimer?.cancel()
        abandonExchange()
    }

    /// Gives up whatever this connection was doing: the upstream connection of an exchange in
    /// progress is closed, the exchange logged as it stands, queued requests dropped.
    private func abandonExchange() {
        queued.removeAll()
        switch state {
        case .forwarding(let exchange, let upstream):
            upstream.handler.close()
            logAccess(exchange)
        case .connecting(let exchange), .authenticating(let exchange):
            logAccess(exchange)
        case .idle, .draining, .spliced, .closed:
            break
        }
        state = .closed
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, case .inputClosed = event {
            clientInputClosed = true
            if isIdle && queued.isEmpty {
                state = .closed
                closeClient(context)
            } else if queued.isEmpty, let exchange = exchangeInProgress, exchange.requestEnded, !exchange.isUpgrade {
                // The client went away while its response was due. Go's HTTP server cancels a
                // request whose connection reads EOF with nothing pipelined behind it, and
                // kube-apiserver with it; finishing it instead would hold a watch or `logs -f`
                // open on the API server, for no one, until the server ends it. Torn down here,
                // not when the close completes: over TLS that can wait for a close_notify.
                abandonExchange()
                closeClient(context)
            }
            return
        }
        // An HTTP/2 stream carries one request, and its connection's handler quiesces for it.
        if event is ChannelShouldQuiesceEvent, clientSplice != nil {
            // Graceful shutdown: an idle connection closes now; one with an exchange in progress
            // finishes it (its response says `Connection: close` if not yet begun) and closes.
            quiescing = true
            queued.removeAll()
            switch state {
            case .idle:
                state = .closed
                closeClient(context)
            case .authenticating(let exchange), .connecting(let exchange), .forwarding(let exchange, _):
                exchange.closesConnection = true
            case .draining, .spliced, .closed:
                break
            }
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    /// Closes the client connection through its `ClientEnd`, which first flushes a response
    /// written in this round of I/O (a close drops what is unflushed).
    private func closeClient(_ context: ChannelHandlerContext) {
        if let client {
            client.close()
        } else {
            context.close(promise: nil)
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        clientWritabilityChanged()
        context.fireChannelWritabilityChanged()
    }

    /// The client end may take response bytes again (or may not).
    func clientWritabilityChanged() {
        if client?.isWritable == true, case .forwarding(_, let upstream) = state {
            upstream.handler.resumeReads()
        }
    }

    func read(context: ChannelHandlerContext) {
        requestClientBytes()
    }

    /// The client end asks whether it may take more request bytes: now (`ClientEnd.read`), or
    /// once the API server can take them.
    func requestClientBytes() {
        if wantsClientBytes {
            client?.read()
        } else {
            readPending = true
        }
    }

    /// Whether more request bytes can be taken now.
    private var wantsClientBytes: Bool {
        // Pipelined requests wait in `queued`; nothing more is read until they are served.
        guard queued.isEmpty else { return false }
        return switch state {
        case .idle, .draining, .closed, .spliced: true
        case .authenticating, .connecting: false
        case .forwarding(_, let upstream): upstream.channel.isWritable
        }
    }

    private func resumeClientReadsIfWanted() {
        if readPending && wantsClientBytes, let client {
            readPending = false
            client.read()
        }
    }

    private func receiveHead(_ head: HTTPRequestHead) {
        idleTimer?.clear()
        let token: String
        switch RequestScreening.preAuthentication(head, allowsUpgrade: clientSplice != nil) {
        case .health(let path, let query):
            let answer = gateway.health.answer(path: path, query: query)
            respondLocally(
                head: head, status: answer.status, contentType: "text/plain; charset=utf-8", body: answer.body)
            return
        case .refused(let refusal):
            let exchange = Exchange(head: head)
            gateway.metrics.requestStarted()
            switch refusal {
            case .impersonation(let name):
                gateway.logger.info(
                    "refused a request asserting its own identity",
                    metadata: ["header": "\(name)", "path": "\(Self.path(of: head.uri))"])
            case .noToken:
                gateway.logger.info("no bearer token", metadata: ["path": "\(Self.path(of: head.uri))"])
                gateway.metrics.recordAuthentication(issuer: nil, reason: "no_token", in: gateway.issuers.current)
            case .policy, .upgradeNeedsHTTP1:
                break
            }
            exchange.closesConnection = refusal.closesConnection
            respond(exchange, status: refusal.status)
            return
        case .token(let bearer):
            token = bearer
        }
        let exchange = Exchange(head: head)
        gateway.metrics.requestStarted()
        let issuers = gateway.issuers.current
        let verificationStart = ContinuousClock.now
        switch issuers.authenticate(token: token) {
        case .authenticated(let identity):
            gateway.metrics.recordVerification(duration: ContinuousClock.now - verificationStart)
            forward(exchange, as: identity)
        case .rejected(let rejection, let issuer):
            gateway.metrics.recordVerification(duration: ContinuousClock.now - verificationStart)
            reject(exchange, rejection, issuer: issuer)
        case .needsKeyRefetch(let issuerName):
            state = .authenticating(exchange)
            guard let client else { return }
            let promise = client.eventLoop.makePromise(of: Result<Identity, TokenRejection>.self)
            promise.completeWithTask { await issuers.authenticateAfterRefetch(token: token) }
            promise.futureResult.assumeIsolated().whenSuccess { result in
                self.gateway.metrics.recordVerification(duration: ContinuousClock.now - verificationStart)
                guard case .authenticating(let current) = self.state, current === exchange else { return }
                switch result {
                case .success(let identity): self.forward(exchange, as: identity)
                case .failure(let rejection): self.reject(exchange, rejection, issuer: issuerName)
                }
            }
        }
    }

    private func receiveBody(_ body: ByteBuffer) {
        switch state {
        case .authenticating(let exchange), .connecting(let exchange):
            exchange.pendingBody.append(body)
            exchange.requestBodyBytes += body.readableBytes
        case .forwarding(let exchange, let upstream):
            exchange.requestBodyBytes += body.readableBytes
            upstream.handler.write(.body(.byteBuffer(body)))
        case .draining:
            drainedBytes += body.readableBytes
            if drainedBytes > Self.maximumDrainedBytes {
                state = .closed
                queued.removeAll()
                client?.close()
            }
        case .idle, .closed, .spliced:
            break
        }
    }

    private func receiveEnd() {
        switch state {
        case .authenticating(let exchange), .connecting(let exchange):
            exchange.requestEnded = true
        case .forwarding(let exchange, let upstream):
            exchange.requestEnded = true
            upstream.handler.write(.end(nil), flush: true)
            if exchange.responseStarted == false { armResponseTimeout() }
        case .draining(let keepAlive):
            finishExchange(keepAlive: keepAlive)
        case .idle, .closed, .spliced:
            break
        }
    }

    // MARK: Authentication outcome

    private func reject(_ exchange: Exchange, _ rejection: TokenRejection, issuer: String?) {
        gateway.metrics.recordAuthentication(issuer: issuer, reason: rejection.reason, in: gateway.issuers.current)
        gateway.logger.info(
            "authentication failed",
            metadata: [
                "reason": "\(rejection.reason)", "detail": "\(rejection)", "issuer": "\(issuer ?? "-")",
                "path": "\(Self.path(of: exchange.head.uri))",
            ])
        if rejection.isForbidden {
            respond(exchange, status: .forbidden("the identity in this token may not be impersonated"))
        } else {
            respond(exchange, status: .unauthorized)
        }
    }

    private func forward(_ exchange: Exchange, as identity: Identity) {
        exchange.identity = identity
        gateway.metrics.recordAuthentication(issuer: identity.issuerName, reason: nil, in: gateway.issuers.current)
        exchange.upstreamHead = ImpersonationHeaders.upstreamHead(
            for: exchange.head, identity: identity, authorization: gateway.pool.credentials.authorization,
            clientAddress: clientAddress, authority: gateway.pool.credentials.authority, upgrade: exchange.isUpgrade)
        guard let client else { return }
        let pool = gateway.pool.pool(for: client.eventLoop)
        if !exchange.isUpgrade && (!exchange.isLongRunning || pool.http2Declined), let connection = pool.takeIdle() {
            exchange.connectionReused = true
            attach(exchange, to: connection)
            return
        }
        connectNew(exchange, pool: pool)
    }

    private func connectNew(_ exchange: Exchange, pool: LoopPool) {
        state = .connecting(exchange)
        exchange.connectionReused = false
        let connecting = exchange.isLongRunning ? pool.connectLongRunning() : pool.connect()
        connecting.assumeIsolated().whenComplete { result in
            guard case .connecting(let current) = self.state, current === exchange else {
                if case .success(let connection) = result { connection.handler.close() }
                return
            }
            switch result {
            case .success(let connection):
                self.attach(exchange, to: connection)
            case .failure(let error):
                self.upstreamFailed(exchange, UpstreamFailure(classifying: error))
            }
        }
    }

    private func attach(_ exchange: Exchange, to connection: UpstreamConnection) {
        guard let upstreamHead = exchange.upstreamHead else { return }
        state = .forwarding(exchange, connection)
        connection.handler.delegate = self
        connection.handler.resumeReads()
        connection.handler.write(.head(upstreamHead))
        exchange.upstreamStartedAt = .now
        for part in exchange.pendingBody {
            connection.handler.write(.body(.byteBuffer(part)))
        }
        if exchange.requestEnded {
            connection.handler.write(.end(nil))
            armResponseTimeout()
        }
        connection.handler.flush()
        exchange.pendingBody = []
        resumeClientReadsIfWanted()
    }

    /// The request is sent: its response head is due within the response-head timeout.
    private func armResponseTimeout() {
        responseTimer?.set(after: gateway.responseHeadTimeout)
    }

    // MARK: Responses

    private func respond(_ exchange: Exchange, status: StatusResponse) {
        exchange.status = status.code
        respondLocally(
            head: exchange.head, status: status.code, contentType: "application/json", body: status.json,
            exchange: exchange)
    }

    private func respondLocally(
        head: HTTPRequestHead, status: HTTPResponseStatus, contentType: String, body: String,
        exchange: Exchange? = nil
    ) {
        guard let client else { return }
        // Not kept alive: after an upgrade request (NIO's decoder parses nothing after one), and
        // when a client that waits for `100 Continue` is answered before its body (it may never
        // send it, and its next request would be read as that body).
        let keepAlive =
            (exchange?.keepAlive ?? (Self.isKeepAlive(head) && !ImpersonationHeaders.isUpgradeRequest(head)))
            && !Self.awaitsContinue(head, exchange: exchange)
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: contentType)
        headers.add(name: "Cache-Control", value: "no-cache, private")
        headers.add(name: "X-Content-Type-Options", value: "nosniff")
        headers.add(name: "Content-Length", value: String(body.utf8.count))
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        client.write(.head(HTTPResponseHead(version: head.version, status: status, headers: headers)))
        if head.method != .HEAD {
            var buffer = client.allocator.buffer(capacity: body.utf8.count)
            buffer.writeString(body)
            client.write(.body(.byteBuffer(buffer)))
        }
        if let exchange {
            exchange.responseBytes = body.utf8.count
            logAccess(exchange)
        }
        // The state moves before `.end` is written, so whatever the write sets off finds this
        // exchange finished.
        let requestEnded = exchange?.requestEnded ?? false
        state = requestEnded ? .idle : .draining(keepAlive: keepAlive)
        drainedBytes = 0
        client.writeAndFlush(.end(nil))
        if Self.awaitsContinue(head, exchange: exchange) {
            closeAbandoningBody()
        } else if requestEnded {
            finishExchange(keepAlive: keepAlive)
        } else {
            resumeClientReadsIfWanted()
        }
    }

    /// The response and the request are both complete: serve the next pipelined request, wait
    /// for the next one, or close.
    private func finishExchange(keepAlive: Bool) {
        if !keepAlive || quiescing || (clientInputClosed && queued.isEmpty) {
            state = .closed
            queued.removeAll()
            client?.close()
            return
        }
        if case .draining = state { state = .idle }
        deliverQueued()
        if case .idle = state {
            if clientInputClosed && queued.isEmpty {
                state = .closed
                client?.close()
                return
            }
            armIdleTimeout()
        }
        resumeClientReadsIfWanted()
    }

    /// Delivers the queued parts of pipelined requests: each head once the exchange before it is
    /// finished, the parts after a head as they come. A nested call (a queued request answered
    /// at once) returns; the outer loop goes on.
    private func deliverQueued() {
        guard !deliveringQueued else { return }
        deliveringQueued = true
        defer { deliveringQueued = false }
        while let next = queued.first, !next.isHead || isIdle {
            queued.removeFirst()
            deliver(next)
        }
        // Outside a read there is no `channelReadComplete` to flush what went upstream.
        if case .forwarding(_, let upstream) = state { upstream.handler.flush() }
    }

    private func upstreamFailed(_ exchange: Exchange, _ failure: UpstreamFailure) {
        gateway.metrics.recordUpstreamError(kind: failure.kind)
        responseTimer?.clear()
        guard let client else { return }
        if exchange.responseStarted {
            // The client has a partial response; closing is the only honest signal left.
            gateway.logger.warning("upstream failed mid-response", metadata: ["error": "\(failure)"])
            logAccess(exchange)
            state = .closed
            client.close()
            return
        }
        // A pooled connection the API server had already closed: try once on a fresh one. A
        // long-running request (a GET) is tried again whatever failed before its answer began
        // (a stream the server refused or dropped with GOAWAY was never processed), unless the
        // answer is overdue: that would only double the wait.
        let retryable = exchange.connectionReused || (exchange.isLongRunning && !failure.isTimeout)
        if retryable && exchange.isReplayable && !exchange.retried {
            exchange.retried = true
            gateway.logger.debug("retrying on a new upstream connection", metadata: ["error": "\(failure)"])
            connectNew(exchange, pool: gateway.pool.pool(for: client.eventLoop))
            return
        }
        gateway.logger.warning(
            "upstream request failed", metadata: ["error": "\(failure)", "kind": "\(failure.kind)"])
        respond(exchange, status: failure.status)
    }

    private func logAccess(_ exchange: Exchange) {
        guard !exchange.recorded else { return }
        exchange.recorded = true
        AccessLog.record(accessEntry(exchange), gateway: gateway)
    }

    /// The exchange as its access-log line shows it now.
    private func accessEntry(_ exchange: Exchange) -> AccessLogEntry {
        AccessLogEntry(
            identity: exchange.identity, method: exchange.head.method.rawValue,
            path: Self.path(of: exchange.head.uri), status: exchange.status.map { Int($0.code) },
            bytes: exchange.responseBytes, duration: ContinuousClock.now - exchange.startedAt,
            upstreamLatency: exchange.upstreamLatency, clientAddress: clientAddress)
    }
}

// MARK: API server → proxy → client

extension ProxyHandler: UpstreamResponseDelegate {
    func upstreamResponseHead(_ head: HTTPResponseHead) {
        guard case .forwarding(let exchange, _) = state, let client else { return }
        if head.status.code < 200 && head.status != .switchingProtocols {
            relayInformational(head, exchange: exchange, client: client)
            return
        }
        responseTimer?.clear()
        exchange.upstreamLatency = exchange.upstreamStartedAt.map { ContinuousClock.now - $0 }
        let switching = head.status == .switchingProtocols
        if switching && !exchange.isUpgrade {
            // A 101 to a request that asked for no upgrade: a broken or hostile upstream.
            if case .forwarding(_, let upstream) = state { upstream.handler.close() }
            upstreamFailed(exchange, .protocolError("101 Switching Protocols to a request that asked for no upgrade"))
            return
        }
        if Self.awaitsContinue(exchange.head, exchange: exchange) {
            exchange.closesConnection = true
            exchange.abandonsBody = true
        }
        exchange.responseBegan()
        exchange.status = head.status
        var headers = ImpersonationHeaders.clientResponseHeaders(head.headers, switchingProtocols: switching)
        if exchange.head.version == .http1_0 && headers.contains(name: "transfer-encoding") {
            // HTTP/1.0 has no chunked coding: the body goes as it comes and ends with the
            // connection.
            headers.remove(name: "transfer-encoding")
            exchange.closesConnection = true
        }
        if !exchange.keepAlive && !switching { headers.add(name: "Connection", value: "close") }
        let response = HTTPResponseHead(version: exchange.head.version, status: head.status, headers: headers)
        client.write(.head(response))
    }

    func upstreamResponseBody(_ body: ByteBuffer) {
        guard case .forwarding(let exchange, let upstream) = state, let client else { return }
        exchange.responseBytes += body.readableBytes
        client.write(.body(.byteBuffer(body)))
        if !client.isWritable { upstream.handler.pauseReads() }
    }

    func upstreamResponseEnd() {
        guard case .forwarding(let exchange, let upstream) = state, let client else { return }
        logAccess(exchange)
        let keepAlive = exchange.keepAlive
        // As in `respondLocally`, the state moves before `.end` is written.
        if exchange.requestEnded && !exchange.isUpgrade {
            state = .idle
            gateway.pool.pool(for: client.eventLoop).release(upstream)
        } else {
            // The API server answered before the request body was complete: this connection
            // cannot carry another request, and the rest of the client's body is dropped.
            state = .draining(keepAlive: keepAlive)
            drainedBytes = 0
            upstream.handler.close()
        }
        client.writeAndFlush(.end(nil))
        if exchange.abandonsBody && !exchange.requestEnded {
            closeAbandoningBody()
        } else if exchange.requestEnded {
            finishExchange(keepAlive: keepAlive)
        } else {
            resumeClientReadsIfWanted()
        }
    }

    /// An informational answer (`100 Continue`, `103 Early Hints`) goes to the client as the API
    /// server sent it, before the final one (RFC 9110 §15.2); an HTTP/1.0 client gets none. The
    /// wait for the final answer goes on.
    private func relayInformational(_ head: HTTPResponseHead, exchange: Exchange, client: any ClientEnd) {
        guard exchange.head.version.major >= 2 || exchange.head.version.minor >= 1, !exchange.responseStarted else {
            return
        }
        if head.status == .continue { exchange.continued = true }
        let headers = ImpersonationHeaders.clientResponseHeaders(head.headers, switchingProtocols: false)
        client.writeAndFlush(
            .head(HTTPResponseHead(version: exchange.head.version, status: head.status, headers: headers)))
    }

    /// Closes the connection after a response to a client still waiting for `100 Continue`: it
    /// has sent no body to drain first.
    private func closeAbandoningBody() {
        state = .closed
        queued.removeAll()
        client?.close()
    }

    func upstreamSwitchingProtocols() -> SpliceHandler? {
        guard case .forwarding(let exchange, _) = state, exchange.isUpgrade, let client,
            let closeFuture = client.closeFuture
        else { return nil }
        client.writeAndFlush(.end(nil))
        // The session's access-log line is written when it ends, as kube-apiserver logs a
        // hijacked request: its duration is the session's, its bytes what the API server sent
        // the client through the splice. (Before the gauge below goes down: whoever sees no
        // session open sees its request counted.)
        let splice = clientSplice
        closeFuture.assumeIsolated().whenComplete { _ in
            exchange.responseBytes += splice?.bytesToChannel ?? 0
            self.logAccess(exchange)
        }
        gateway.metrics.upgradeOpened(until: closeFuture)
        state = .spliced
        // Bytes pipelined behind the upgrade request were parsed as HTTP; they are dropped.
        queued.removeAll()
        clientSplice?.idleTimeout = gateway.upgradeIdleTimeout
        // The session's start, for an audit trail that a crash cannot lose; its access-log
        // line comes when it ends (kube-apiserver's audit log records both stages too).
        gateway.logger.info("upgraded session started", metadata: accessEntry(exchange).metadata)
        return clientSplice
    }

    func upstreamReadComplete() {
        client?.flush()
    }

    func upstreamWritabilityChanged(isWritable: Bool) {
        if isWritable { resumeClientReadsIfWanted() }
    }

    func upstreamFailed(_ failure: UpstreamFailure) {
        guard case .forwarding(let exchange, _) = state else { return }
        upstreamFailed(exchange, failure)
    }
}

extension HTTPServerRequestPart {
    fileprivate var isHead: Bool {
        if case .head = self { return true }
        return false
    }
}

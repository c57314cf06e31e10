import FoundationEssentials
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOHTTP2
import NIOSSL

/// A stand-in for kube-apiserver on loopback HTTPS. It requires the proxy's own bearer token,
/// records every request it receives, and answers like the real one: discovery and
/// `NamespaceList` JSON, chunked watch streams, and `Status` errors.
///
/// Paths:
/// - `/version`, `/api`, `/apis`, `/api/v1`: discovery documents.
/// - `GET /api/v1/namespaces`: a `NamespaceList`; with `watch=true` or `watch=1`, a watch stream
///   whose first event is sent at once and whose second waits for `releaseWatches()`.
/// - `POST`/`PUT`/`PATCH` anywhere: the request body echoed back.
/// - `/testbed/bytes?n=N`: N bytes of body; `/testbed/delay?ms=N`: an answer after N ms;
///   `/testbed/hangup`: the connection closed without an answer; `/testbed/bogus-101`: a 101
///   to a request that asked for no upgrade (a broken upstream); `/testbed/endless`: a chunked
///   watch-like stream that never ends and writes only as fast as it is read
///   (see `endlessStreamBytes`).
/// - Upgrades (see `StandInUpgrades`): `exec`/`attach` over the Kubernetes WebSocket channel
///   protocol or SPDY/3.1, `portforward` over SPDY/3.1 plain or tunnelled in a WebSocket (each
///   forwarded connection goes to `127.0.0.1:<port>`; the WebSocket can be refused, see
///   `setRefusesWebSocketPortForward`), and `SPDY/3.1` anywhere else (say `/testbed/spdy-echo`)
///   as a raw echo.
/// - `GET /testbed/requests` (no credential needed, not recorded): what was received, as JSON.
public final class StandInAPIServer: Sendable {
    public let certificateAuthority: TestCertificateAuthority
    /// The bearer token the proxy must present.
    public let expectedToken: String
    private let server: TestHTTPServer
    private struct State {
        var requests: [ReceivedRequest] = []
        /// Open streams and the last chunk each sends when released.
        var heldWatches: [(writer: ResponseWriter, last: String)] = []
        var closeAfterEachResponse = false
        var sessions: [StandInUpgrades.SessionRecord] = []
        var forwards: [StandInUpgrades.ForwardRecord] = []
        var refusesTunnelledPortForward = false
        var endlessStreamBytes = 0
    }
    private let state: NIOLockedValueBox<State>

    public var port: Int { server.port }
    public var url: String { "https://127.0.0.1:\(server.port)" }

    /// A kubeconfig that reaches this server with its CA and the token it expects: what the
    /// proxy's `--kubeconfig` is given in tests and the demo.
    public var kubeconfig: String {
        let ca = Data(certificateAuthority.certificatePEM.utf8).base64EncodedString()
        return """
            clusters: [{name: c, cluster: {server: "\(url)", certificate-authority-data: \(ca)}}]
            users: [{name: u, user: {token: \(expectedToken)}}]
            contexts: [{name: x, context: {cluster: c, user: u}}]
            current-context: x

            """
    }

    /// - Parameters:
    ///   - http2: offer HTTP/2 by ALPN as kube-apiserver does (upgrades stay HTTP/1.1).
    ///   - http2MaximumStreams: the concurrent streams it allows on one connection.
    ///   - clientCertificateAuthority: require a TLS client certificate signed by this authority
    ///     (kube-apiserver's `--client-ca-file`), which then stands for the bearer token; each
    ///     request records the certificate's subject.
    public init(
        expectedToken: String = "proxy-service-account-token", port: Int = 0,
        certificateAuthority: TestCertificateAuthority? = nil, http2: Bool = false, http2MaximumStreams: Int = 100,
        clientCertificateAuthority: TestCertificateAuthority? = nil
    ) async throws {
        let authority = try certificateAuthority ?? TestCertificateAuthority(commonName: "stand-in API server CA")
        self.certificateAuthority = authority
        self.expectedToken = expectedToken
        let state = NIOLockedValueBox(State())
        self.state = state
        let identity = try authority.issueServerCertificate(
            commonName: "kube-apiserver", dnsNames: ["localhost", "kubernetes"])
        let requiresClientCertificate = clientCertificateAuthority != nil
        let authorize: @Sendable (HTTPRequestHead) -> Bool = { head in
            requiresClientCertificate || head.headers["Authorization"] == ["Bearer \(expectedToken)"]
        }
        let record: @Sendable (HTTPRequestHead) -> Void = { head in
            let request = ReceivedRequest(
                method: head.method.rawValue, uri: head.uri, headers: head.headers.map { ($0.name, $0.value) },
                body: [], connection: -1)
            state.withLockedValue { $0.requests.append(request) }
        }
        let hooks = StandInUpgrades.Hooks(
            authorize: authorize, record: record,
            recordSession: { session in state.withLockedValue { $0.sessions.append(session) } },
            recordForward: { forward in state.withLockedValue { $0.forwards.append(forward) } },
            tunnelsPortForward: { state.withLockedValue { !$0.refusesTunnelledPortForward } })
        let upgraders: TestHTTPServer.Upgraders = { StandInUpgrades.makeUpgraders(hooks: hooks) }
        let flowControl = NIOLockedValueBox(HTTP2FlowControlLog())
        self.flowControl = flowControl
        var tls = try identity.serverTLSConfiguration()
        if let clientCertificateAuthority {
            tls.certificateVerification = .noHostnameVerification
            tls.trustRoots = .certificates(
                try NIOSSLCertificate.fromPEMBytes(Array(clientCertificateAuthority.certificatePEM.utf8)))
        }
        self.server = try await TestHTTPServer.start(
            tls: tls, port: port, http2: http2,
            http2MaximumStreams: http2MaximumStreams, http2FlowControl: flowControl,
            upgraders: upgraders
        ) { request, writer in
            StandInAPIServer.handle(
                request, writer, state: state, expectedToken: requiresClientCertificate ? nil : expectedToken)
        }
    }

    /// Every request received so far (the introspection path excluded).
    public var requests: [ReceivedRequest] { state.withLockedValue { $0.requests } }

    /// The flow-control frames the HTTP/2 connections' clients (the proxy) sent.
    public var http2FlowControl: HTTP2FlowControlLog { flowControl.withLockedValue { $0 } }
    private let flowControl: NIOLockedValueBox<HTTP2FlowControlLog>

    /// The exec and attach sessions that ended: each command, the stdin it received, and the
    /// protocol that carried it (`v5.channel.k8s.io`, `SPDY/3.1 v4.channel.k8s.io`, ...).
    public var sessions: [(command: [String], stdin: [UInt8], transport: String)] {
        state.withLockedValue { $0.sessions.map { ($0.command, $0.stdin, $0.transport) } }
    }

    /// The connections port-forward made on clients' behalf: the port, kubectl's request id, and
    /// `SPDY/3.1` or, tunnelled through a WebSocket, `SPDY/3.1+portforward.k8s.io`.
    public var forwards: [(port: Int, requestID: String, transport: String)] {
        state.withLockedValue { $0.forwards.map { ($0.port, $0.requestID, $0.transport) } }
    }

    /// Body bytes the `/testbed/endless` streams have handed to their sockets so far: it stops
    /// growing when the reader stops reading and backpressure reaches this server.
    public var endlessStreamBytes: Int { state.withLockedValue { $0.endlessStreamBytes } }

    public func resetRequests() {
        state.withLockedValue { $0.requests = [] }
    }

    /// Held streams (watches, `logs -f`) whose connection is still open: a proxy that gives up
    /// on one closes its connection.
    public var openHeldStreams: Int {
        state.withLockedValue { $0.heldWatches.filter { $0.writer.channel.isActive }.count }
    }

    /// Closes the connections that carry the held streams, abruptly (an API server that
    /// crashes): over HTTP/2 one connection carries many streams, and all of them end.
    public func dropHeldStreamConnections() {
        let held = state.withLockedValue { $0.heldWatches }
        for (writer, _) in held { (writer.channel.parent ?? writer.channel).close(promise: nil) }
    }

    /// Sends GOAWAY on the HTTP/2 connections that carry held streams, as an API server that
    /// is shutting down gracefully does: the streams it has accepted run on; it takes no new
    /// ones there.
    public func goAwayOnHeldStreamConnections() {
        let held = state.withLockedValue { $0.heldWatches }
        for (writer, _) in held {
            guard let connection = writer.channel.parent else { continue }
            // The first GOAWAY of a graceful shutdown (RFC 9113 §6.8): no stream is dropped.
            let goAway = HTTP2Frame(
                streamID: .rootStream, payload: .goAway(lastStreamID: .maxID, errorCode: .noError, opaqueData: nil))
            connection.writeAndFlush(goAway, promise: nil)
        }
    }

    /// Ends every held stream (watches, `logs -f`) with one more event or line.
    public func releaseWatches() {
        let held = state.withLockedValue { state in
            defer { state.heldWatches = [] }
            return state.heldWatches
        }
        for (writer, last) in held {
            writer.body(last)
            writer.end()
        }
    }

    /// When true, the server refuses to tunnel port-forward through a WebSocket, like an API
    /// server before 1.30: kubectl must fall back to a plain SPDY/3.1 upgrade.
    public func setRefusesWebSocketPortForward(_ refuse: Bool) {
        state.withLockedValue { $0.refusesTunnelledPortForward = refuse }
    }

    /// When true, the server closes each connection right after answering, without saying so
    /// (like an API server whose idle timeout fires just as the proxy reuses the connection).
    public func setCloseAfterEachResponse(_ close: Bool) {
        state.withLockedValue { $0.closeAfterEachResponse = close }
    }

    public func stop() async {
        releaseWatches()
        await server.stop()
    }

    private static func handle(
        _ request: ReceivedRequest, _ writer: ResponseWriter, state: NIOLockedValueBox<State>, expectedToken: String?
    ) {
        if request.method == "GET" && request.path == "/testbed/requests" {
            let recorded = state.withLockedValue { $0.requests }
            writer.respond(.ok, TestJSON.array(recorded.map(describe)).serialized)
            return
        }
        let closeAfter = state.withLockedValue { state in
            state.requests.append(request)
            return state.closeAfterEachResponse
        }
        let writer = closeAfter ? ResponseWriter(channel: writer.channel, keepAlive: false, silently: true) : writer
        // Without an expected token, the TLS layer has verified a client certificate.
        guard expectedToken.map({ request.values("Authorization") == ["Bearer \($0)"] }) ?? true else {
            writer.respond(.unauthorized, status(401, "Unauthorized", "Unauthorized"))
            return
        }
        let query = request.uri.drop { $0 != "?" }.dropFirst()
        let parameters = Dictionary(
            query.split(separator: "&").map { item -> (String, String) in
                let parts = item.split(separator: "=", maxSplits: 1)
                return (String(parts[0]), parts.count > 1 ? String(parts[1]) : "")
            }, uniquingKeysWith: { first, _ in first })

        switch (request.method, request.path) {
        case ("GET", let path) where StandInUpgrades.podSubresource(String(path)) == "portforward":
            // What kube-apiserver answers a port-forward that did not (or could not) upgrade.
            writer.respond(.badRequest, status(400, "BadRequest", "Upgrade request required"))
        case ("POST", _), ("PUT", _), ("PATCH", _):
            let contentType = request.values("Content-Type").first ?? "application/octet-stream"
            writer.head(.ok, headers: [("Content-Type", contentType), ("Content-Length", String(request.body.count))])
            writer.body(request.body, flush: false)
            writer.end()
        case ("GET", "/version"):
            writer.respond(.ok, #"{"major":"1","minor":"33","gitVersion":"v1.33.0-standin","platform":"linux/amd64"}"#)
        case ("GET", "/api"):
            writer.respond(
                .ok,
                #"{"kind":"APIVersions","versions":["v1"],"serverAddressByClientCIDRs":[{"clientCIDR":"0.0.0.0/0","serverAddress":"127.0.0.1"}]}"#
            )
        case ("GET", "/apis"):
            writer.respond(.ok, #"{"kind":"APIGroupList","apiVersion":"v1","groups":[]}"#)
        case ("GET", "/api/v1"):
            writer.respond(
                .ok,
                #"{"kind":"APIResourceList","groupVersion":"v1","resources":[{"name":"namespaces","singularName":"namespace","namespaced":false,"kind":"Namespace","verbs":["create","delete","get","list","patch","update","watch"],"shortNames":["ns"]},{"name":"pods","singularName":"pod","namespaced":true,"kind":"Pod","verbs":["create","delete","get","list","patch","update","watch"],"shortNames":["po"]},{"name":"pods/attach","singularName":"","namespaced":true,"kind":"PodAttachOptions","verbs":["create","get"]},{"name":"pods/exec","singularName":"","namespaced":true,"kind":"PodExecOptions","verbs":["create","get"]},{"name":"pods/log","singularName":"","namespaced":true,"kind":"Pod","verbs":["get"]},{"name":"pods/portforward","singularName":"","namespaced":true,"kind":"PodPortForwardOptions","verbs":["create","get"]}]}"#
            )
        case ("GET", "/api/v1/namespaces") where parameters["watch"] == "true" || parameters["watch"] == "1":
            writer.head(.ok, headers: [("Content-Type", "application/json"), ("Transfer-Encoding", "chunked")])
            writer.body(chunk(event: "ADDED", name: "default"))
            state.withLockedValue { $0.heldWatches.append((writer, chunk(event: "MODIFIED", name: "default"))) }
        case ("GET", "/api/v1/namespaces"):
            writer.respond(.ok, namespaceList)
        case ("GET", let path) where path.hasPrefix("/api/v1/namespaces/") && path.hasSuffix("/log"):
            let parts = path.split(separator: "/")
            guard parts.count == 7 else { fallthrough }
            writer.head(.ok, headers: [("Content-Type", "text/plain"), ("Transfer-Encoding", "chunked")])
            writer.body("log line 1 from \(parts[5])\n")
            if parameters["follow"] == "true" {
                state.withLockedValue { $0.heldWatches.append((writer, "log line 2 from \(parts[5])\n")) }
            } else {
                writer.body("log line 2 from \(parts[5])\n")
                writer.end()
            }
        case ("GET", let path)
        where path.hasPrefix("/api/v1/namespaces/") && path.split(separator: "/").count == 6
            && path.split(separator: "/")[4] == "pods":
            let parts = path.split(separator: "/")
            writer.respond(.ok, pod(namespace: String(parts[3]), name: String(parts[5])))
        case ("GET", "/testbed/bytes"):
            let count = Int(parameters["n"] ?? "") ?? 0
            writer.head(
                .ok, headers: [("Content-Type", "application/octet-stream"), ("Content-Length", String(count))])
            var sent = 0
            while sent < count {
                let size = min(64 * 1024, count - sent)
                writer.body([UInt8](repeating: UInt8(65 + (sent / 65536) % 26), count: size), flush: false)
                sent += size
            }
            writer.end()
        case ("GET", "/testbed/delay"):
            let milliseconds = Int64(parameters["ms"] ?? "") ?? 0
            writer.channel.eventLoop.scheduleTask(in: .milliseconds(milliseconds)) {
                writer.respond(.ok, #"{"delayed":true}"#)
            }
        case ("GET", "/testbed/endless"):
            EndlessStream.start(writer) { count in state.withLockedValue { $0.endlessStreamBytes += count } }
        case ("GET", "/testbed/hangup"):
            writer.abort()
        case ("GET", "/testbed/bogus-101"):
            writer.head(.switchingProtocols, headers: [("Upgrade", "evil"), ("Connection", "Upgrade")])
            writer.body("raw bytes a proxy must never splice")
        default:
            writer.respond(.notFound, status(404, "NotFound", "the server could not find the requested resource"))
        }
    }

    static func status(_ code: Int, _ reason: String, _ message: String) -> String {
        #"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"\#(message)","reason":"\#(reason)","code":\#(code)}"#
    }

    static func pod(namespace: String, name: String) -> String {
        #"{"kind":"Pod","apiVersion":"v1","metadata":{"name":"\#(name)","namespace":"\#(namespace)","uid":"11111111-1111-1111-1111-111111111111","resourceVersion":"7"},"spec":{"containers":[{"name":"app","image":"busybox"}]},"status":{"phase":"Running","containerStatuses":[{"name":"app","ready":true,"restartCount":0,"image":"busybox","imageID":"","state":{"running":{"startedAt":"2026-01-01T00:00:00Z"}}}]}}"#
    }

    static func chunk(event: String, name: String) -> String {
        #"{"type":"\#(event)","object":{"kind":"Namespace","apiVersion":"v1","metadata":{"name":"\#(name)","resourceVersion":"1"}}}"#
            + "\n"
    }

    public static let namespaceList: String = {
        let items = ["default", "kube-system", "kube-public", "kube-node-lease", "team-a", "team-b"].map { name in
            #"{"metadata":{"name":"\#(name)","uid":"00000000-0000-0000-0000-000000000000","resourceVersion":"42","creationTimestamp":"2026-01-01T00:00:00Z","labels":{"kubernetes.io/metadata.name":"\#(name)"}},"spec":{"finalizers":["kubernetes"]},"status":{"phase":"Active"}}"#
        }
        return #"{"kind":"NamespaceList","apiVersion":"v1","metadata":{"resourceVersion":"42"},"items":["#
            + items.joined(separator: ",") + "]}"
    }()

    private static func describe(_ request: ReceivedRequest) -> TestJSON {
        [
            "method": .string(request.method),
            "uri": .string(request.uri),
            "headers": .array(request.headers.map { [.string($0.name), .string($0.value)] }),
            "bodyBytes": .int(request.body.count),
        ]
    }
}

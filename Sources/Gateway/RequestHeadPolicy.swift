import NIOHTTP1

/// Request heads refused before any authentication, as kube-apiserver's HTTP server refuses
/// them: a `CONNECT` (this is not a forward proxy, and the decoder reads nothing after one), a
/// `TRACE` (its body could not be framed to the API server), and
/// an HTTP/1.x head without exactly one `Host` where HTTP/1.1 requires it (RFC 9112 §3.2).
enum RequestHeadPolicy {
    struct Refusal {
        var status: StatusResponse
        /// The connection cannot carry another request after this one.
        var closesConnection: Bool
    }

    static func refusal(for head: HTTPRequestHead) -> Refusal? {
        if head.method == .TRACE {
            // NIO's HTTP/1.1 encoder strips a TRACE's Content-Length and Transfer-Encoding, so
            // the API server would read its body as the next request. Nothing in Kubernetes
            // answers TRACE.
            let status = StatusResponse(
                code: .methodNotAllowed, reason: "MethodNotAllowed", message: "TRACE is not supported by this proxy")
            return Refusal(status: status, closesConnection: head.version.major < 2)
        }
        if head.method == .CONNECT {
            // After a CONNECT head the HTTP/1 decoder treats every further byte as a tunnel.
            let status = StatusResponse(
                code: .methodNotAllowed, reason: "MethodNotAllowed", message: "CONNECT is not supported by this proxy")
            return Refusal(status: status, closesConnection: head.version.major < 2)
        }
        guard head.version.major == 1 else { return nil }
        var hosts = 0
        for (name, _) in head.headers where ASCIICaseInsensitive.equals(name, "host") { hosts += 1 }
        if hosts > 1 || (hosts == 0 && head.version.minor >= 1) {
            let message = hosts > 1 ? "too many Host headers" : "missing required Host header"
            return Refusal(status: .badRequest(message), closesConnection: true)
        }
        return nil
    }
}

import Issuers
import NIOHTTP1

/// The rewrite of a client's request head into the one the API server receives: the client's
/// credentials and any identity claims it tried to make are removed, hop-by-hop headers are
/// dropped, and the verified identity is asserted with the proxy's own credential.
enum ImpersonationHeaders {
    /// Headers that describe one connection, never forwarded (RFC 9110 §7.6.1, and `Proxy-*`):
    /// `Connection`, `Keep-Alive`, `Proxy-Connection`, `Proxy-Authorization`,
    /// `Proxy-Authenticate`, `TE`, `Trailer`, `Transfer-Encoding`, `Upgrade`, in any case.
    /// Every header of every request and response is asked: the length picks the one or two
    /// names to compare, byte by byte.
    static func isHopByHop(_ name: String) -> Bool {
        switch name.utf8.count {
        case 2: ASCIICaseInsensitive.equals(name, "te")
        case 7: ASCIICaseInsensitive.equals(name, "upgrade") || ASCIICaseInsensitive.equals(name, "trailer")
        case 10: ASCIICaseInsensitive.equals(name, "connection") || ASCIICaseInsensitive.equals(name, "keep-alive")
        case 16: ASCIICaseInsensitive.equals(name, "proxy-connection")
        case 17: ASCIICaseInsensitive.equals(name, "transfer-encoding")
        case 18: ASCIICaseInsensitive.equals(name, "proxy-authenticate")
        case 19: ASCIICaseInsensitive.equals(name, "proxy-authorization")
        default: false
        }
    }

    /// The name of the first header by which a client asserts an identity of its own
    /// (`Impersonate-*`), which is answered 403; nil when there is none.
    static func clientImpersonationHeader(in headers: HTTPHeaders) -> String? {
        headers.first { isImpersonationHeader($0.name) }?.name
    }

    static func isImpersonationHeader(_ name: String) -> Bool {
        ASCIICaseInsensitive.hasPrefix(name, "impersonate-")
    }

    /// Builds the upstream request head for `client`, asserting `identity`.
    /// - Parameters:
    ///   - authorization: the proxy's own `Authorization` value, or nil when it authenticates by client certificate.
    ///   - clientAddress: the peer's IP address, for `X-Forwarded-For`.
    ///   - authority: `host:port` of the API server, for `Host`.
    ///   - upgrade: keep the client's `Upgrade` header and ask the API server to switch protocols.
    static func upstreamHead(
        for client: HTTPRequestHead, identity: Identity, authorization: String?, clientAddress: String?,
        authority: String, upgrade: Bool = false
    ) -> HTTPRequestHead {
        let connectionTokens = connectionOptions(client.headers)
        // Collected as fields and made into `HTTPHeaders` once: `HTTPHeaders.add` checks each
        // name for non-ASCII bytes (and traps on one) and for `Connection`, some 400
        // instructions a header. The names here come from parsers that accept only tokens, and
        // the outbound validators still check every name and value before they are written,
        // failing the write instead of trapping.
        var headers: [(String, String)] = []
        headers.reserveCapacity(client.headers.count + 5 + identity.groups.count)
        headers.append(("Host", authority))
        var chunked = false
        for (name, value) in client.headers {
            if ASCIICaseInsensitive.equals(name, "transfer-encoding") {
                chunked = chunked || ASCIICaseInsensitive.listContains(value, "chunked")
            }
            if isHopByHop(name) || connectionTokens.contains(where: { ASCIICaseInsensitive.equals(name, $0) })
                || ASCIICaseInsensitive.equals(name, "host") || ASCIICaseInsensitive.equals(name, "authorization")
                || ASCIICaseInsensitive.equals(name, "x-forwarded-for")
                || ASCIICaseInsensitive.hasPrefix(name, "impersonate-")
                || ASCIICaseInsensitive.hasPrefix(name, "x-remote-") || ASCIICaseInsensitive.hasPrefix(name, "proxy-")
            {
                continue
            }
            headers.append((name, value))
        }
        // The body was de-chunked by the decoder; keep its framing for the re-encoder.
        if chunked {
            headers.append(("Transfer-Encoding", "chunked"))
        }
        if upgrade {
            for value in client.headers["upgrade"] { headers.append(("Upgrade", value)) }
            headers.append(("Connection", "Upgrade"))
        }
        if let authorization { headers.append(("Authorization", authorization)) }
        headers.append(("Impersonate-User", identity.username))
        for group in identity.groups { headers.append(("Impersonate-Group", group)) }
        if let uid = identity.uid { headers.append(("Impersonate-Uid", uid)) }
        if let clientAddress { headers.append(("X-Forwarded-For", clientAddress)) }
        return HTTPRequestHead(
            version: .http1_1, method: client.method, uri: client.uri, headers: HTTPHeaders(headers))
    }

    /// Whether `head` asks to switch protocols (`Connection: Upgrade` with an `Upgrade` header).
    static func isUpgradeRequest(_ head: HTTPRequestHead) -> Bool {
        head.headers.contains(name: "upgrade")
            && head.headers[canonicalForm: "connection"].contains { $0.lowercased() == "upgrade" }
    }

    /// Removes hop-by-hop headers from an upstream response before it is relayed to the client;
    /// a `101` keeps its `Upgrade` and says `Connection: Upgrade`.
    static func clientResponseHeaders(_ upstream: HTTPHeaders, switchingProtocols: Bool = false) -> HTTPHeaders {
        let connectionTokens = connectionOptions(upstream)
        // Fields made into `HTTPHeaders` once, as in `upstreamHead`.
        var headers: [(String, String)] = []
        headers.reserveCapacity(upstream.count + 2)
        var chunked = false
        for (name, value) in upstream {
            if ASCIICaseInsensitive.equals(name, "transfer-encoding") {
                chunked = chunked || ASCIICaseInsensitive.listContains(value, "chunked")
            }
            if isHopByHop(name) || connectionTokens.contains(where: { ASCIICaseInsensitive.equals(name, $0) }) {
                continue
            }
            headers.append((name, value))
        }
        if chunked {
            headers.append(("Transfer-Encoding", "chunked"))
        }
        if switchingProtocols {
            for value in upstream["upgrade"] { headers.append(("Upgrade", value)) }
            headers.append(("Connection", "Upgrade"))
        }
        return HTTPHeaders(headers)
    }

    /// The header names `Connection` headers list that are not hop-by-hop already (so the usual
    /// `keep-alive` or `upgrade` leaves it empty and allocates nothing), lowercased. Never
    /// `content-length`: it frames the body that is relayed, whatever `Connection` says, and
    /// without it the next hop would read that body as the next message (a request smuggled to
    /// the API server on the proxy's credential, or a response the client takes for another).
    private static func connectionOptions(_ headers: HTTPHeaders) -> [String] {
        var tokens: [String] = []
        for (name, value) in headers where ASCIICaseInsensitive.equals(name, "connection") {
            ASCIICaseInsensitive.forEachListItem(in: value) { item in
                let token = String(decoding: item, as: UTF8.self).lowercased()
                if !isHopByHop(token) && token != "content-length" && !tokens.contains(token) { tokens.append(token) }
            }
        }
        return tokens
    }
}

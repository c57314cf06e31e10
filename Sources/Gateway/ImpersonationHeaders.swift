import Issuers
import NIOHTTP1

/// The rewrite of a client's request head into the one the API server receives: the client's
/// credentials and any identity claims it tried to make are removed, hop-by-hop headers are
/// dropped, and the verified identity is asserted with the proxy's own credential.
enum ImpersonationHeaders {
    /// Headers that describe one connection, never forwarded (RFC 9110 §7.6.1, and `Proxy-*`).
    private static let hopByHop: Set<String> = [
        "connection", "keep-alive", "proxy-connection", "proxy-authorization", "proxy-authenticate", "te",
        "trailer", "transfer-encoding", "upgrade",
    ]

    /// The name of the first header by which a client asserts an identity of its own
    /// (`Impersonate-*`), which is answered 403; nil when there is none.
    static func clientImpersonationHeader(in headers: HTTPHeaders) -> String? {
        headers.first { isImpersonationHeader($0.name) }?.name
    }

    static func isImpersonationHeader(_ name: String) -> Bool {
        name.utf8.count >= 12 && name.lowercased().hasPrefix("impersonate-")
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
        var headers = HTTPHeaders()
        headers.reserveCapacity(client.headers.count + 4 + identity.groups.count)
        headers.add(name: "Host", value: authority)
        for (name, value) in client.headers {
            let lower = name.lowercased()
            if hopByHop.contains(lower) || connectionTokens.contains(lower) || lower == "host"
                || lower == "authorization" || lower == "x-forwarded-for" || lower.hasPrefix("impersonate-")
                || lower.hasPrefix("x-remote-") || lower.hasPrefix("proxy-")
            {
                continue
            }
            headers.add(name: name, value: value)
        }
        // The body was de-chunked by the decoder; keep its framing for the re-encoder.
        if client.headers[canonicalForm: "transfer-encoding"].contains(where: { $0.lowercased() == "chunked" }) {
            headers.add(name: "Transfer-Encoding", value: "chunked")
        }
        if upgrade {
            for value in client.headers["upgrade"] { headers.add(name: "Upgrade", value: value) }
            headers.add(name: "Connection", value: "Upgrade")
        }
        if let authorization { headers.add(name: "Authorization", value: authorization) }
        headers.add(name: "Impersonate-User", value: identity.username)
        for group in identity.groups { headers.add(name: "Impersonate-Group", value: group) }
        if let uid = identity.uid { headers.add(name: "Impersonate-Uid", value: uid) }
        if let clientAddress { headers.add(name: "X-Forwarded-For", value: clientAddress) }
        return HTTPRequestHead(version: .http1_1, method: client.method, uri: client.uri, headers: headers)
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
        var headers = HTTPHeaders()
        headers.reserveCapacity(upstream.count)
        for (name, value) in upstream {
            let lower = name.lowercased()
            if hopByHop.contains(lower) || connectionTokens.contains(lower) { continue }
            headers.add(name: name, value: value)
        }
        if upstream[canonicalForm: "transfer-encoding"].contains(where: { $0.lowercased() == "chunked" }) {
            headers.add(name: "Transfer-Encoding", value: "chunked")
        }
        if switchingProtocols {
            for value in upstream["upgrade"] { headers.add(name: "Upgrade", value: value) }
            headers.add(name: "Connection", value: "Upgrade")
        }
        return headers
    }

    /// The header names a `Connection` header lists, lowercased.
    private static func connectionOptions(_ headers: HTTPHeaders) -> Set<String> {
        var tokens: Set<String> = []
        guard headers.contains(name: "connection") else { return tokens }
        for value in headers[canonicalForm: "connection"] {
            tokens.insert(value.lowercased())
        }
        return tokens
    }
}

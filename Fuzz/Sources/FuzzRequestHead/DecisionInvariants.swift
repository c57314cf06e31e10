import FuzzSupport
import Gateway
import Issuers
import NIOCore
import NIOEmbedded
import NIOHTTP1

/// What must hold of the gateway's decision for any request head (SPEC §3.5-3.6).
enum DecisionInvariants {
    static func check(_ decision: RequestScreening.Decision, for request: DecodedRequest) {
        let client = request.head.headers
        let assertsIdentity = client.contains { $0.name.lowercased().hasPrefix("impersonate-") }
        switch decision {
        case .servedLocally:
            require(request.head.method == .GET || request.head.method == .HEAD, "served a non-GET locally")
        case .rejected(let status):
            require(!assertsIdentity || status == .forbidden, "a request with Impersonate-* headers got \(status)")
        case .needsKeyRefetch:
            require(false, "fixed keys never need a refetch")
        case .forwarded(let head, let identity):
            require(!assertsIdentity, "forwarded a request that asserted its own identity")
            checkForwarded(head, identity: identity, client: request)
        }
    }

    private static func checkForwarded(_ head: HTTPRequestHead, identity: Identity, client: DecodedRequest) {
        let headers = head.headers
        require(head.method == client.head.method && head.uri == client.head.uri, "method or URI changed")
        require(headers["authorization"] == [Upstream.authorization], "the client's Authorization was forwarded")
        require(headers["impersonate-user"] == [identity.username], "Impersonate-User is not the identity's")
        require(headers["impersonate-group"] == identity.groups, "Impersonate-Group is not the identity's groups")
        require(headers["impersonate-uid"] == (identity.uid.map { [$0] } ?? []), "Impersonate-Uid is not the uid")
        let proxyNames: Set<String> = ["impersonate-user", "impersonate-group", "impersonate-uid"]
        for (name, value) in headers {
            let lower = name.lowercased()
            require(!lower.hasPrefix("impersonate-") || proxyNames.contains(lower), "forwarded \(name)")
            require(!lower.hasPrefix("x-remote-"), "forwarded \(name)")
            require(!lower.hasPrefix("proxy-"), "forwarded \(name)")
            require(!["keep-alive", "te", "trailer"].contains(lower), "forwarded hop-by-hop \(name)")
            require(!value.utf8.contains { $0 == 0x0D || $0 == 0x0A || $0 == 0 }, "a header value breaks the line")
        }
        require(headers["host"] == [Upstream.authority], "Host is not the API server's")
        require(headers["x-forwarded-for"] == [Upstream.clientAddress], "X-Forwarded-For is not the client's")
        let upgrade =
            client.head.headers.contains(name: "upgrade")
            && client.head.headers[canonicalForm: "connection"].contains { $0.lowercased() == "upgrade" }
        require(headers["connection"] == (upgrade ? ["Upgrade"] : []), "forwarded Connection \(headers["connection"])")
        require(upgrade || !headers.contains(name: "upgrade"), "forwarded Upgrade without an upgrade")
        checkFraming(headers, client: client)
        checkReparse(head)
    }

    /// One framing, never two: at most one Content-Length, never beside Transfer-Encoding, and a
    /// body that arrived is still framed.
    private static func checkFraming(_ headers: HTTPHeaders, client: DecodedRequest) {
        let lengths = headers["content-length"]
        require(lengths.count <= 1, "forwarded \(lengths.count) Content-Length headers")
        require(lengths.isEmpty || !headers.contains(name: "transfer-encoding"), "Content-Length and Transfer-Encoding")
        guard client.bodyBytes > 0 else { return }
        let chunked = headers["transfer-encoding"] == ["chunked"]
        let length = lengths.first.flatMap { Int($0) }
        require(
            chunked || (client.ended ? length == client.bodyBytes : (length ?? 0) > client.bodyBytes),
            "a \(client.bodyBytes)-byte body is forwarded with framing \(lengths) \(headers["transfer-encoding"])")
    }

    /// The head as the API server reads it: written by NIO's encoder and parsed again, it is one
    /// request with the same method, URI and headers (framing aside, which the encoder may add).
    private static func checkReparse(_ head: HTTPRequestHead) {
        let encoder = EmbeddedChannel(handler: HTTPRequestEncoder())
        let decoder = EmbeddedChannel(handler: ByteToMessageHandler(HTTPRequestDecoder()))
        defer {
            _ = try? encoder.finish()
            _ = try? decoder.finish()
        }
        var wire = ByteBuffer()
        do {
            try encoder.writeOutbound(HTTPClientRequestPart.head(head))
            while let data = try encoder.readOutbound(as: IOData.self) {
                guard case .byteBuffer(var buffer) = data else { continue }
                wire.writeBuffer(&buffer)
            }
            try decoder.writeInbound(wire)
        } catch {
            require(false, "the forwarded head does not survive encoding and parsing: \(error)")
        }
        guard case .head(let parsed) = try? decoder.readInbound(as: HTTPServerRequestPart.self) else {
            return require(false, "the forwarded head does not parse as a request")
        }
        func unframed(_ headers: HTTPHeaders) -> [String] {
            headers.filter { !["content-length", "transfer-encoding"].contains($0.name.lowercased()) }
                .map { "\($0.name.lowercased()): \($0.value)" }
        }
        require(parsed.method == head.method && parsed.uri == head.uri, "the API server reads another request line")
        require(unframed(parsed.headers) == unframed(head.headers), "the API server reads other headers")
    }
}

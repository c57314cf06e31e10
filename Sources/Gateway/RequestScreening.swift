import Issuers
import NIOHTTP1

/// What the gateway decides for a request head before any upstream connection exists: the
/// checks of `ProxyHandler.receiveHead` in its order (health paths, `RequestHeadPolicy`,
/// upgrades where none can be spliced, client `Impersonate-*` headers, the bearer token,
/// authentication) and the rewrite of `ImpersonationHeaders.upstreamHead`. Composes those functions without adding rules of its
/// own, so the fuzz target (`Fuzz/`) and tests can judge the decision with no sockets.
public enum RequestScreening {
    public enum Decision: Sendable {
        /// A health or readiness path, answered by the proxy itself.
        case servedLocally
        /// Answered by the proxy with this status (a Kubernetes `Status` body); nothing is forwarded.
        case rejected(HTTPResponseStatus)
        /// No current key verified the token's signature; the answer waits for fresh keys.
        case needsKeyRefetch
        /// Forwarded as `head`, asserting `identity`.
        case forwarded(head: HTTPRequestHead, identity: Identity)
    }

    /// - Parameters:
    ///   - allowsUpgrade: whether the connection can splice an upgrade (HTTP/1.1: true; an HTTP/2 stream: false).
    ///   - authenticate: the token's judgement, as `IssuerSet.authenticate(token:)` gives it.
    ///   - authorization: the proxy's own `Authorization` value for the API server, if any.
    ///   - clientAddress: the peer's IP address, for `X-Forwarded-For`.
    ///   - authority: `host:port` of the API server, for `Host`.
    public static func screen(
        _ head: HTTPRequestHead, allowsUpgrade: Bool, authenticate: (String) -> IssuerSet.Attempt,
        authorization: String?, clientAddress: String?, authority: String
    ) -> Decision {
        if HealthEndpoints.handles(path: ProxyHandler.path(of: head.uri))
            && (head.method == .GET || head.method == .HEAD)
        {
            return .servedLocally
        }
        if let refusal = RequestHeadPolicy.refusal(for: head) { return .rejected(refusal.status.code) }
        let isUpgrade = ImpersonationHeaders.isUpgradeRequest(head)
        if isUpgrade && !allowsUpgrade { return .rejected(.badRequest) }
        if ImpersonationHeaders.clientImpersonationHeader(in: head.headers) != nil { return .rejected(.forbidden) }
        guard case .token(let token) = BearerToken.extract(from: head.headers) else { return .rejected(.unauthorized) }
        switch authenticate(token) {
        case .authenticated(let identity):
            let upstream = ImpersonationHeaders.upstreamHead(
                for: head, identity: identity, authorization: authorization, clientAddress: clientAddress,
                authority: authority, upgrade: isUpgrade)
            return .forwarded(head: upstream, identity: identity)
        case .rejected(let rejection, _):
            return .rejected(rejection.isForbidden ? .forbidden : .unauthorized)
        case .needsKeyRefetch:
            return .needsKeyRefetch
        }
    }
}

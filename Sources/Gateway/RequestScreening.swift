import Issuers
import NIOHTTP1

/// What the gateway decides for a request head before any upstream connection exists: the
/// checks of `ProxyHandler.receiveHead` in its order (health paths, `RequestHeadPolicy`,
/// upgrades where none can be spliced, client `Impersonate-*` headers, the bearer token,
/// authentication) and the rewrite of `ImpersonationHeaders.upstreamHead`. Composes those
/// functions without adding rules of its own, so the fuzz target (`Fuzz/`) and tests can judge
/// the decision with no sockets.
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
        let token: String
        switch preAuthentication(head, allowsUpgrade: allowsUpgrade) {
        case .health: return .servedLocally
        case .refused(let refusal): return .rejected(refusal.status.code)
        case .token(let bearer): token = bearer
        }
        let isUpgrade = ImpersonationHeaders.isUpgradeRequest(head)
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

    /// What is decided about a head before its token is judged.
    enum PreAuthentication {
        /// A health or readiness path (GET or HEAD), answered locally.
        case health(path: Substring, query: Substring?)
        case refused(Refusal)
        /// The bearer token to authenticate.
        case token(String)
    }

    /// Why a head is refused before authentication, with the answer each gets.
    enum Refusal {
        /// `RequestHeadPolicy`: CONNECT, or HTTP/1.1 without exactly one Host.
        case policy(RequestHeadPolicy.Refusal)
        /// An upgrade on a connection that cannot splice one (an HTTP/2 stream).
        case upgradeNeedsHTTP1
        /// The client asserts an identity of its own with this `Impersonate-*` header.
        case impersonation(header: String)
        /// No usable bearer token.
        case noToken

        var status: StatusResponse {
            switch self {
            case .policy(let refusal): refusal.status
            case .upgradeNeedsHTTP1: .badRequest("protocol upgrades need HTTP/1.1")
            case .impersonation: .forbidden("impersonation headers are not allowed through this proxy")
            case .noToken: .unauthorized
            }
        }

        var closesConnection: Bool {
            if case .policy(let refusal) = self { return refusal.closesConnection }
            return false
        }
    }

    /// The checks before authentication, in the one order `ProxyHandler.receiveHead` and
    /// `screen` both follow: health paths, `RequestHeadPolicy`, upgrades where none can be
    /// spliced, client `Impersonate-*` headers, the bearer token.
    static func preAuthentication(_ head: HTTPRequestHead, allowsUpgrade: Bool) -> PreAuthentication {
        let path = ProxyHandler.path(of: head.uri)
        if HealthEndpoints.handles(path: path) && (head.method == .GET || head.method == .HEAD) {
            let query = path.endIndex < head.uri.endIndex ? head.uri[head.uri.utf8.index(after: path.endIndex)...] : nil
            return .health(path: path, query: query)
        }
        if let refusal = RequestHeadPolicy.refusal(for: head) { return .refused(.policy(refusal)) }
        if !allowsUpgrade && ImpersonationHeaders.isUpgradeRequest(head) { return .refused(.upgradeNeedsHTTP1) }
        if let name = ImpersonationHeaders.clientImpersonationHeader(in: head.headers) {
            return .refused(.impersonation(header: name))
        }
        guard case .token(let token) = BearerToken.extract(from: head.headers) else { return .refused(.noToken) }
        return .token(token)
    }
}

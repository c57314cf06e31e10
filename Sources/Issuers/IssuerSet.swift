import Config
import FoundationEssentials
import Logging

/// The configured issuers, and the one entry point that turns a bearer token into an identity.
/// Immutable once built: a reload builds a new set (reusing unchanged issuers' key state).
public final class IssuerSet: Sendable {
    public let issuers: [Issuer]
    private let issuersByURL: [String: Issuer]
    /// Identities of verified tokens (nil when `tokenCacheTTL` is zero). Owned by this set
    /// alone, so a reload never serves an identity mapped under the previous configuration.
    public let tokenCache: TokenCache?

    /// The result of the synchronous first attempt at authenticating a token.
    public enum Attempt: Sendable {
        case authenticated(Identity)
        case rejected(TokenRejection, issuer: String?)
        /// No current key verified the signature; `authenticateAfterRefetch` may fetch fresh keys.
        case needsKeyRefetch
    }

    /// Builds the issuers of `configuration`. `reusing` hands over issuers of a previous set whose
    /// key source is unchanged, so a reload neither refetches nor forgets their keys.
    public init(
        configuration: ProxyConfiguration,
        timing: KeyRefreshTiming = KeyRefreshTiming(),
        logger: Logger
    ) throws(IssuerSetupError) {
        var issuers: [Issuer] = []
        var byURL: [String: Issuer] = [:]
        for issuerConfiguration in configuration.issuers {
            let issuer = try Issuer(
                configuration: issuerConfiguration,
                allowReservedIdentities: configuration.allowReservedIdentities,
                timing: timing,
                logger: logger)
            issuers.append(issuer)
            byURL[issuerConfiguration.url] = issuer
            if issuerConfiguration.url == "https://accounts.google.com" { byURL["accounts.google.com"] = issuer }
        }
        self.issuers = issuers
        self.issuersByURL = byURL
        self.tokenCache = TokenCache(ttl: configuration.tokenCacheTTL)
    }

    /// Verifies `token` with the keys at hand. Never blocks and never touches the network.
    public func authenticate(token: String, now: Double = IssuerSet.currentTime()) -> Attempt {
        var cacheKey: TokenCache.Key?
        if let tokenCache, token.utf8.count <= CompactJWS.maximumLength {
            let key = tokenCache.key(for: token)
            if let identity = tokenCache.identity(for: key, now: now) { return .authenticated(identity) }
            cacheKey = key
        }
        // Route by the unverified iss first: a token for no configured issuer costs no more.
        let parts: CompactJWS.Parts
        let issuer: Issuer
        do {
            parts = try CompactJWS.Parts(token)
            guard let issuerURL = try parts.unverifiedIssuer(), let match = issuersByURL[issuerURL] else {
                return .rejected(.unknownIssuer, issuer: nil)
            }
            issuer = match
        } catch {
            return .rejected(error, issuer: nil)
        }
        let parsed: CompactJWS
        do {
            parsed = try CompactJWS(parts)
        } catch {
            return .rejected(error, issuer: issuer.configuration.name)
        }
        switch issuer.verifier.verify(parsed, keys: issuer.keys, now: now) {
        case .verified(let identity):
            if let cacheKey { tokenCache?.insert(identity, for: cacheKey, now: now) }
            return .authenticated(identity)
        case .rejected(let rejection): return .rejected(rejection, issuer: issuer.configuration.name)
        case .noKeyVerified: return .needsKeyRefetch
        }
    }

    /// Completes an attempt that needed fresh keys: refetches the issuer's JWKS (coalesced and
    /// rate limited) and verifies once more.
    public func authenticateAfterRefetch(token: String) async -> Result<Identity, TokenRejection> {
        guard let parsed = try? CompactJWS(parsing: token), let issuerURL = parsed.unverifiedIssuer,
            let issuer = issuersByURL[issuerURL]
        else { return .failure(.unknownIssuer) }
        let keys = await issuer.refetchForUnverifiedToken() ?? issuer.keys
        let now = Self.currentTime()
        switch issuer.verifier.verify(parsed, keys: keys, now: now) {
        case .verified(let identity):
            if let tokenCache { tokenCache.insert(identity, for: tokenCache.key(for: token), now: now) }
            return .success(identity)
        case .rejected(let rejection), .noKeyVerified(let rejection): return .failure(rejection)
        }
    }

    /// Runs every issuer's key fetch and refresh until cancelled.
    public func runKeyRefresh() async {
        await withDiscardingTaskGroup { group in
            for issuer in issuers {
                group.addTask { await issuer.runRefreshLoop() }
            }
        }
    }

    public func shutdown() async {
        for issuer in issuers { await issuer.shutdown() }
    }

    public static func currentTime() -> Double {
        Date().timeIntervalSince1970
    }
}

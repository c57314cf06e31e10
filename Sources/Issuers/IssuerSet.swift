import Config
import FoundationEssentials
import Logging
import NIOSSL
import Synchronization

/// The configured issuers, and the one entry point that turns a bearer token into an identity.
/// Immutable once built: a reload builds a new set, adopting the previous set's key sources for
/// issuers whose URL, discovery URL and CA are unchanged. Together with `configuration` it is
/// the snapshot a request works with from start to end.
public final class IssuerSet: Sendable {
    /// The configuration this set was built from (readiness policy and the rest of the snapshot).
    public let configuration: ProxyConfiguration
    public let issuers: [Issuer]
    private let issuersByURL: [String: Issuer]
    private let retired = Atomic<Bool>(false)
    /// Identities of verified tokens (nil when `tokenCacheTTL` is zero). Owned by this set
    /// alone, so a reload never serves an identity mapped under the previous configuration.
    public let tokenCache: TokenCache?

    /// The result of the synchronous first attempt at authenticating a token.
    public enum Attempt: Sendable {
        case authenticated(Identity)
        case rejected(TokenRejection, issuer: String?)
        /// No current key of `issuer` (its configured name) verified the signature;
        /// `authenticateAfterRefetch` may fetch fresh keys.
        case needsKeyRefetch(issuer: String)
    }

    /// Builds the issuers of `configuration` and starts the key refresh of every new key source.
    /// Issuers of `previous` whose key source is unchanged hand it over, keys and all; `previous`
    /// stays usable until `shutdown()` is called on it. Throws, having started nothing, when an
    /// issuer's CA bundle does not parse.
    public init(
        configuration: ProxyConfiguration,
        timing: KeyRefreshTiming = KeyRefreshTiming(),
        logger: Logger,
        adoptingKeysFrom previous: IssuerSet? = nil
    ) throws(IssuerSetupError) {
        enum Plan {
            case adopt(KeySource)
            case create(TLSConfiguration)
        }
        let reusable = previous?.issuers.map(\.keySource).filter { !$0.isRetired } ?? []
        var plans: [(IssuerConfiguration, Plan)] = []
        for issuerConfiguration in configuration.issuers {
            if let source = reusable.first(where: { $0.configuration.sharesKeySource(with: issuerConfiguration) }) {
                plans.append((issuerConfiguration, .adopt(source)))
            } else {
                plans.append((issuerConfiguration, .create(try KeyFetcher.tlsConfiguration(for: issuerConfiguration))))
            }
        }

        var issuers: [Issuer] = []
        var byURL: [String: Issuer] = [:]
        for (issuerConfiguration, plan) in plans {
            let source: KeySource
            switch plan {
            case .adopt(let adopted):
                source = adopted
            case .create(let tls):
                source = KeySource(configuration: issuerConfiguration, tls: tls, timing: timing, logger: logger)
            }
            source.claim()
            let issuer = Issuer(
                configuration: issuerConfiguration,
                allowReservedIdentities: configuration.allowReservedIdentities,
                keySource: source)
            issuers.append(issuer)
            for value in issuerConfiguration.acceptedIssValues { byURL[value] = issuer }
        }
        self.configuration = configuration
        self.issuers = issuers
        self.issuersByURL = byURL
        self.tokenCache = TokenCache(ttl: configuration.tokenCacheTTL)
    }

    /// The problems `init` would throw for, all of them, without creating anything or touching
    /// the network (for `check-config`): issuers whose CA bundle does not parse.
    public static func setupProblems(of configuration: ProxyConfiguration) -> [IssuerSetupError] {
        var problems: [IssuerSetupError] = []
        for issuer in configuration.issuers {
            do {
                _ = try KeyFetcher.tlsConfiguration(for: issuer)
            } catch {
                problems.append(error)
            }
        }
        return problems
    }

    /// Verifies `token` with the keys at hand. Never blocks and never touches the network.
    public func authenticate(token: String, now: Double = IssuerSet.currentTime()) -> Attempt {
        var cacheKey: TokenCache.Key?
        if let tokenCache, token.utf8.count <= CompactJWS.maximumLength {
            let key = tokenCache.key(for: token)
            if let identity = tokenCache.identity(for: key, now: now) { return .authenticated(identity) }
            cacheKey = key
        }
        let issuer: Issuer
        let parts: CompactJWS.Parts
        do {
            (issuer, parts) = try CompactJWS.route(token, in: issuersByURL)
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
        case .noKeyVerified: return .needsKeyRefetch(issuer: issuer.configuration.name)
        }
    }

    /// Completes an attempt that needed fresh keys: refetches the issuer's JWKS (coalesced and
    /// rate limited) and verifies once more.
    public func authenticateAfterRefetch(token: String) async -> Result<Identity, TokenRejection> {
        guard let (issuer, parts) = try? CompactJWS.route(token, in: issuersByURL), let parsed = try? CompactJWS(parts)
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

    /// Retires this set: releases its claim on every key source. Sources no newer set adopted
    /// stop refreshing and close their HTTP clients. Requests still holding the set keep
    /// verifying with the keys they have. Calling it again does nothing.
    public func shutdown() async {
        guard !retired.exchange(true, ordering: .acquiringAndReleasing) else { return }
        for issuer in issuers { await issuer.keySource.release() }
    }

    public static func currentTime() -> Double {
        Date().timeIntervalSince1970
    }
}

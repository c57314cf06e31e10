import Config
import Crypto
import Logging
import Testbed
import Testing

@testable import Issuers

/// SPEC §4: verified tokens are cached under a keyed hash of the token, for `tokenCacheTTL`
/// and never past `exp`; failures are not cached; the cache is bounded and belongs to one
/// `IssuerSet`, so a reload starts empty.
@Suite("Token cache")
struct TokenCacheTests {
    private func identity(_ name: String = "alice", expiresAt: Double = 2_000_000_000) -> Identity {
        Identity(username: name, groups: ["dev"], uid: nil, issuerName: "idp", expiresAt: expiresAt)
    }

    @Test("a cached identity is served until the TTL runs out")
    func ttl() throws {
        let cache = try #require(TokenCache(ttl: .seconds(10)))
        let key = cache.key(for: "token-a")
        #expect(cache.identity(for: key, now: 1000) == nil)
        cache.insert(identity(), for: key, now: 1000)
        #expect(cache.identity(for: key, now: 1000)?.username == "alice")
        #expect(cache.identity(for: key, now: 1009.999)?.username == "alice")
        #expect(cache.identity(for: key, now: 1010) == nil)
        #expect(cache.hits == 2)
        #expect(cache.misses == 2)
        #expect(cache.count == 0, "an entry found stale is dropped")
    }

    @Test("a cached identity is never served past the token's exp (exp itself is still valid)")
    func neverPastExpiry() throws {
        let cache = try #require(TokenCache(ttl: .seconds(600)))
        let key = cache.key(for: "token-a")
        cache.insert(identity(expiresAt: 1003), for: key, now: 1000)
        #expect(cache.identity(for: key, now: 1003) != nil)
        #expect(cache.identity(for: key, now: 1003.5) == nil)
        cache.insert(identity(expiresAt: 999), for: key, now: 1000)
        #expect(cache.count == 0, "an identity already expired is not inserted")
    }

    @Test("a TTL of zero disables the cache")
    func disabled() {
        #expect(TokenCache(ttl: .zero) == nil)
        #expect(TokenCache(ttl: .seconds(-1)) == nil)
    }

    @Test("the key is an HMAC under a per-cache random key: not the token, not shared between caches")
    func keys() throws {
        let first = try #require(TokenCache(ttl: .seconds(10)))
        let second = try #require(TokenCache(ttl: .seconds(10)))
        #expect(first.key(for: "token-a") == first.key(for: "token-a"))
        #expect(first.key(for: "token-a") != first.key(for: "token-b"))
        #expect(first.key(for: "token-a") != second.key(for: "token-a"))
        #expect(first.key(for: "") != first.key(for: "\u{0}"))
    }

    @Test("the key is exactly HMAC-SHA256 of the token's UTF-8 bytes")
    func keyIsHMAC() throws {
        let secret = SymmetricKey(data: (0..<32).map { UInt8($0 * 7 % 256) })
        let cache = try #require(TokenCache(ttl: .seconds(10), capacity: 16, hmacKey: secret))
        for token in ["", "a", "eyJhbGciOiJSUzI1NiJ9.e30.c2ln", String(repeating: "x", count: 1_000), "é\u{0}😀"] {
            let mac = Array(HMAC<SHA256>.authenticationCode(for: Array(token.utf8), using: secret))
            let words = cache.key(for: token).words
            let expected = (0..<4).map { word in
                (0..<8).reduce(UInt64(0)) { $0 | UInt64(mac[word * 8 + $1]) << (8 * $1) }
            }
            #expect([words.0, words.1, words.2, words.3] == expected, "\(token.prefix(20))")
        }
    }

    @Test("the cache never holds more than its capacity; the newest entries stay")
    func bounded() throws {
        let cache = try #require(TokenCache(ttl: .seconds(600), capacity: 64))
        var keys: [TokenCache.Key] = []
        for index in 0..<5_000 {
            let key = cache.key(for: "token-\(index)")
            keys.append(key)
            cache.insert(identity("user-\(index)"), for: key, now: 1000 + Double(index) * 0.001)
            #expect(cache.count <= 64)
        }
        #expect(cache.count > 0)
        // Each stripe keeps its newest entry, so the newest token of all is still served.
        #expect(cache.identity(for: keys[4_999], now: 1006)?.username == "user-4999")
        #expect(cache.identity(for: keys[0], now: 1006) == nil)
    }

    @Test("a full stripe drops its oldest entry, here one already past its exp, for a fresh one")
    func evictsStaleFirst() throws {
        let cache = try #require(TokenCache(ttl: .seconds(10), capacity: TokenCache.stripeCount))
        // Find two tokens that share a stripe (one entry per stripe here).
        var byStripe: [UInt64: String] = [:]
        var pair: (String, String)?
        for index in 0..<1_000 {
            let token = "token-\(index)"
            let stripe = cache.key(for: token).words.0 & UInt64(TokenCache.stripeCount - 1)
            if let other = byStripe[stripe] {
                pair = (other, token)
                break
            }
            byStripe[stripe] = token
        }
        let (older, newer) = try #require(pair)
        cache.insert(identity("older", expiresAt: 1005), for: cache.key(for: older), now: 1000)
        cache.insert(identity("newer"), for: cache.key(for: newer), now: 1006)
        #expect(cache.identity(for: cache.key(for: newer), now: 1006)?.username == "newer")
        #expect(cache.identity(for: cache.key(for: older), now: 1006) == nil)
    }

    /// Tokens whose keys fall in one stripe, for tests of a stripe's eviction order.
    private func tokensSharingAStripe(_ count: Int, in cache: TokenCache) -> [String] {
        var byStripe: [UInt64: [String]] = [:]
        for index in 0... {
            let token = "token-\(index)"
            let stripe = cache.key(for: token).words.0 & UInt64(TokenCache.stripeCount - 1)
            byStripe[stripe, default: []].append(token)
            if byStripe[stripe]!.count == count { return byStripe[stripe]! }
        }
        return []
    }

    @Test("a full stripe drops its oldest entry; a token inserted again counts as new")
    func evictsOldestInInsertionOrder() throws {
        // Four entries per stripe.
        let cache = try #require(TokenCache(ttl: .seconds(600), capacity: 4 * TokenCache.stripeCount))
        let tokens = tokensSharingAStripe(6, in: cache)
        for (index, token) in tokens[0..<4].enumerated() {
            cache.insert(identity("user-\(index)"), for: cache.key(for: token), now: 1000 + Double(index))
        }
        // Verified again (a new entry for the same token): now the newest of the stripe.
        cache.insert(identity("user-0"), for: cache.key(for: tokens[0]), now: 1010)
        cache.insert(identity("user-4"), for: cache.key(for: tokens[4]), now: 1011)
        cache.insert(identity("user-5"), for: cache.key(for: tokens[5]), now: 1012)
        let served = tokens.map { cache.identity(for: cache.key(for: $0), now: 1013)?.username }
        #expect(served == ["user-0", nil, nil, "user-3", "user-4", "user-5"])
        #expect(cache.count == 4)
    }

    @Test("the eviction bookkeeping stays bounded when the same tokens are verified again and again")
    func bookkeepingBounded() throws {
        let cache = try #require(TokenCache(ttl: .seconds(600), capacity: 64))
        for round in 0..<5_000 {
            let key = cache.key(for: "token-\(round % 3)")
            cache.insert(identity(), for: key, now: 1000 + Double(round) * 0.01)
            // Entries found stale by lookups leave their insertions behind too.
            _ = cache.identity(for: key, now: 1000 + Double(round) * 0.01 + 601)
        }
        #expect(cache.count == 0)
        #expect(cache.insertionRecords <= 2 * 64 + TokenCache.stripeCount)
        // And a full cache keeps working after compactions: the newest token is served.
        for index in 0..<1_000 {
            cache.insert(identity("user-\(index)"), for: cache.key(for: "other-\(index)"), now: 2000)
        }
        #expect(cache.count <= 64)
        #expect(cache.identity(for: cache.key(for: "other-999"), now: 2000)?.username == "user-999")
        #expect(cache.insertionRecords <= 2 * 64 + TokenCache.stripeCount)
    }

    @Test("concurrent lookups and inserts from many tasks stay consistent")
    func concurrency() async throws {
        let cache = try #require(TokenCache(ttl: .seconds(600), capacity: 256))
        await withTaskGroup(of: Void.self) { group in
            for worker in 0..<8 {
                group.addTask {
                    for index in 0..<2_000 {
                        let key = cache.key(for: "token-\((worker * 7 + index) % 300)")
                        if cache.identity(for: key, now: 1000) == nil {
                            cache.insert(
                                Identity(
                                    username: "u", groups: [], uid: nil, issuerName: "i", expiresAt: 5000), for: key,
                                now: 1000)
                        }
                    }
                }
            }
        }
        #expect(cache.count <= 256)
        #expect(cache.hits + cache.misses == 16_000)
    }
}

/// The cache as the gateway sees it: through `IssuerSet`, with tokens from a real issuer.
@Suite("Token cache in IssuerSet")
struct IssuerSetCacheTests {
    private static let timing = KeyRefreshTiming(
        initialBackoff: .milliseconds(50), maximumBackoff: .milliseconds(100), refreshInterval: .seconds(600),
        minimumRefetchInterval: .milliseconds(200))

    private func makeIssuers(
        _ idp: StandInIssuer, ttl: Duration = .seconds(10), usernamePrefix: String = ""
    ) throws -> IssuerSet {
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let issuer = IssuerConfiguration(
            url: idp.url, audiences: ["kubernetes"], certificateAuthorityPEM: idp.certificateAuthority.certificatePEM,
            claimMappings: ClaimMappings(usernamePrefix: usernamePrefix))
        return try IssuerSet(
            configuration: ProxyConfiguration(issuers: [issuer], tokenCacheTTL: ttl), timing: Self.timing,
            logger: logger)
    }

    /// Runs `body` once every set in `sets` has its keys (each set's key sources fetch on
    /// their own from creation), then shuts the sets down.
    private func running<T>(_ sets: [IssuerSet], _ body: () async throws -> T) async throws -> T {
        do {
            let deadline = ContinuousClock.now + .seconds(30)
            while !sets.allSatisfy({ $0.issuers[0].status.isReady }) {
                guard ContinuousClock.now < deadline else { throw TestbedError("keys never loaded") }
                try await Task.sleep(for: .milliseconds(20))
            }
            let result = try await body()
            for set in sets { await set.shutdown() }
            return result
        } catch {
            for set in sets { await set.shutdown() }
            throw error
        }
    }

    @Test("a second request with the same token is a cache hit")
    func hit() async throws {
        let idp = try await StandInIssuer()
        let issuers = try makeIssuers(idp)
        try await running([issuers]) {
            let token = try idp.mint()
            let now = IssuerSet.currentTime()
            #expect(issuers.authenticate(token: token, now: now).identity?.username == "alice@example.com")
            #expect(issuers.authenticate(token: token, now: now + 1).identity?.username == "alice@example.com")
            #expect(issuers.tokenCache?.hits == 1)
            #expect(issuers.tokenCache?.misses == 1)
            #expect(issuers.authenticate(token: token, now: now + 9.9).identity != nil)
            #expect(issuers.tokenCache?.hits == 2)
            #expect(issuers.tokenCache?.count == 1)
        }
        await idp.stop()
    }

    @Test("after the TTL the token is verified again")
    func ttlExpiry() async throws {
        let idp = try await StandInIssuer()
        let issuers = try makeIssuers(idp, ttl: .seconds(5))
        try await running([issuers]) {
            let claims = idp.claims()
            let token = try idp.mint(claims)
            let now = IssuerSet.currentTime()
            #expect(issuers.authenticate(token: token, now: now).identity != nil)
            #expect(issuers.authenticate(token: token, now: now + 6).identity != nil)
            #expect(issuers.tokenCache?.hits == 0)
            #expect(issuers.tokenCache?.misses == 2)
        }
        await idp.stop()
    }

    @Test("a cached identity is not served past exp, even within the TTL")
    func neverPastExpiry() async throws {
        let idp = try await StandInIssuer()
        let issuers = try makeIssuers(idp, ttl: .seconds(600))
        try await running([issuers]) {
            let token = try idp.mint(idp.claims(lifetime: 30))
            let now = IssuerSet.currentTime()
            #expect(issuers.authenticate(token: token, now: now).identity != nil)
            #expect(issuers.authenticate(token: token, now: now + 10).identity != nil)
            #expect(issuers.authenticate(token: token, now: now + 32).rejection == .expired)
        }
        await idp.stop()
    }

    @Test("failures are not cached: a token refused while keys were missing verifies once they arrive")
    func failuresNotCached() async throws {
        let idp = try await StandInIssuer()
        idp.setAvailable(false)
        let issuers = try makeIssuers(idp)
        let token = try idp.mint()
        #expect(issuers.authenticate(token: token).rejection == .keysUnavailable)
        let expired = try idp.mint(idp.claims(lifetime: -120))
        #expect(issuers.authenticate(token: expired).rejection == .expired)
        #expect(issuers.authenticate(token: expired).rejection == .expired)
        #expect(issuers.tokenCache?.count == 0)
        idp.setAvailable(true)
        try await running([issuers]) {
            #expect(issuers.authenticate(token: token).identity != nil)
            #expect(issuers.tokenCache?.count == 1)
        }
        await idp.stop()
    }

    @Test("a reload (a new IssuerSet) never serves an identity mapped under the old configuration")
    func reloadIsolation() async throws {
        let idp = try await StandInIssuer()
        let before = try makeIssuers(idp, usernamePrefix: "old:")
        let after = try makeIssuers(idp, usernamePrefix: "new:")
        try await running([before, after]) {
            let token = try idp.mint()
            #expect(before.authenticate(token: token).identity?.username == "old:alice@example.com")
            #expect(before.authenticate(token: token).identity?.username == "old:alice@example.com")
            #expect(after.authenticate(token: token).identity?.username == "new:alice@example.com")
            #expect(after.tokenCache?.hits == 0)
            #expect(after.tokenCache?.misses == 1)
        }
        await idp.stop()
    }

    @Test("tokenCacheTTL 0 disables the cache: every request verifies")
    func disabledByConfiguration() async throws {
        let idp = try await StandInIssuer()
        let issuers = try makeIssuers(idp, ttl: .zero)
        try await running([issuers]) {
            #expect(issuers.tokenCache == nil)
            let token = try idp.mint()
            #expect(issuers.authenticate(token: token).identity != nil)
            #expect(issuers.authenticate(token: token).identity != nil)
        }
        await idp.stop()
    }
}

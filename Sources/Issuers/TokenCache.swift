// swift-crypto's BoringSSL, which the Crypto product links in anyway: its SHA256_CTX is a plain
// struct, so the HMAC seeds below are copied on the stack. Crypto's SHA256 wraps the same state
// in a class, and copying a seed cost two allocations per lookup (a third of a cache hit).
import CCryptoBoringSSL
import Crypto
import FoundationEssentials
import NIOConcurrencyHelpers
import NIOCore
import Synchronization

/// The identities of recently verified tokens, so a client sending the same token on every
/// request pays for one signature check per TTL instead of one per request.
///
/// Invariants:
/// - An entry is keyed by an HMAC-SHA256 of the token under a random key made for this cache;
///   the token itself is never stored, and the key never leaves the process.
/// - An entry is served for at most `ttl` after the verification that made it, and never once
///   the token's `exp` has passed.
/// - Only successful verifications are inserted; a refusal is always recomputed.
/// - At most `capacity` entries are held: a full stripe drops its oldest entry, in O(1). Entries
///   age in insertion order, so those past their TTL are always the oldest; an entry past its
///   token's `exp` (or its TTL) is also dropped when a lookup finds it.
/// - A cache belongs to one `IssuerSet`: a reload builds a new set with a new, empty cache, so
///   no identity mapped under an old configuration is served after the swap.
///
/// Lookups run on event loops for every request, so the cache is split into stripes with one
/// lock each (pthread mutexes, which ThreadSanitizer understands), chosen by the key's first
/// word; the hit path is one HMAC, one lock and one dictionary lookup.
public final class TokenCache: Sendable {
    public static let defaultCapacity = 10_000
    static let stripeCount = 16

    /// The 256-bit HMAC of a token.
    struct Key: Hashable, Sendable {
        var words: (UInt64, UInt64, UInt64, UInt64)

        static func == (lhs: Key, rhs: Key) -> Bool {
            lhs.words.0 == rhs.words.0 && lhs.words.1 == rhs.words.1 && lhs.words.2 == rhs.words.2
                && lhs.words.3 == rhs.words.3
        }

        func hash(into hasher: inout Hasher) {
            // The words are already uniformly random; one of them is plenty for a hash table.
            hasher.combine(words.1)
        }
    }

    private struct Entry {
        var identity: Identity
        /// Served while `now < freshUntil` (the TTL) and `now <= identity.expiresAt`.
        var freshUntil: Double
        var sequence: UInt64
    }

    private struct Stripe {
        var entries: [Key: Entry] = [:]
        /// Every insertion in order, oldest first: the entry to drop when the stripe is full.
        /// An insertion whose entry has since been dropped or replaced stays until it reaches
        /// the front (its sequence no longer matches), or until `compact()` when the queue has
        /// grown to twice the capacity: O(1) amortized per insertion either way.
        var insertions = CircularBuffer<(key: Key, sequence: UInt64)>()
        var nextSequence: UInt64 = 0

        /// Drops the oldest entry still held.
        mutating func dropOldest() {
            while let oldest = insertions.popFirst() {
                if entries[oldest.key]?.sequence == oldest.sequence {
                    entries[oldest.key] = nil
                    return
                }
            }
        }

        /// Forgets the insertions whose entries are gone.
        mutating func compact() {
            let entries = self.entries
            insertions.removeAll { entries[$0.key]?.sequence != $0.sequence }
        }
    }

    /// SHA-256 states after absorbing the HMAC key XOR ipad and XOR opad (RFC 2104): copying
    /// them makes each token's HMAC-SHA256 cost the token's blocks and two finalizations.
    private let innerSeed: SHA256_CTX
    private let outerSeed: SHA256_CTX
    private let ttl: Double
    private let capacityPerStripe: Int
    private let stripes: [NIOLockedValueBox<Stripe>]
    private let hitCount = Atomic<Int>(0)
    private let missCount = Atomic<Int>(0)

    /// A cache serving identities for `ttl`, or nil when `ttl` is zero (caching disabled).
    /// `capacity` is rounded up to a multiple of the stripe count.
    public convenience init?(ttl: Duration, capacity: Int = TokenCache.defaultCapacity) {
        self.init(ttl: ttl, capacity: capacity, hmacKey: SymmetricKey(size: .bits256))
    }

    /// `hmacKey` is the secret keying the token hashes; only tests choose it.
    init?(ttl: Duration, capacity: Int, hmacKey: SymmetricKey) {
        let seconds = Double(ttl.components.seconds) + Double(ttl.components.attoseconds) * 1e-18
        guard seconds > 0, hmacKey.bitCount <= SHA256.blockByteCount * 8 else { return nil }
        self.ttl = seconds
        self.capacityPerStripe = max(1, (capacity + Self.stripeCount - 1) / Self.stripeCount)
        var block = [UInt8](repeating: 0, count: SHA256.blockByteCount)
        hmacKey.withUnsafeBytes { key in block.replaceSubrange(0..<key.count, with: key) }
        self.innerSeed = Self.sha256State(absorbing: block.map { $0 ^ 0x36 })
        self.outerSeed = Self.sha256State(absorbing: block.map { $0 ^ 0x5C })
        self.stripes = (0..<Self.stripeCount).map { _ in NIOLockedValueBox(Stripe()) }
    }

    /// Lookups that found a servable identity.
    public var hits: Int { hitCount.load(ordering: .relaxed) }
    /// Lookups that found nothing servable (absent, past the TTL or past `exp`).
    public var misses: Int { missCount.load(ordering: .relaxed) }

    /// The number of entries held, stale ones included.
    public var count: Int {
        stripes.reduce(0) { total, stripe in total + stripe.withLockedValue { $0.entries.count } }
    }

    /// The insertions remembered for eviction, live or not: bounded by twice the capacity.
    var insertionRecords: Int {
        stripes.reduce(0) { total, stripe in total + stripe.withLockedValue { $0.insertions.count } }
    }

    private static func sha256State(absorbing block: [UInt8]) -> SHA256_CTX {
        var state = SHA256_CTX()
        CCryptoBoringSSL_SHA256_Init(&state)
        block.withUnsafeBytes { _ = CCryptoBoringSSL_SHA256_Update(&state, $0.baseAddress, $0.count) }
        return state
    }

    /// HMAC-SHA256(key, token) = SHA256(key ^ opad || SHA256(key ^ ipad || token)). The words
    /// hold the MAC's bytes in order (read as little-endian integers on this platform).
    func key(for token: String) -> Key {
        var inner = innerSeed
        var outer = outerSeed
        var key = Key(words: (0, 0, 0, 0))
        var token = token
        token.withUTF8 { _ = CCryptoBoringSSL_SHA256_Update(&inner, $0.baseAddress, $0.count) }
        withUnsafeMutableBytes(of: &key.words) { raw in
            let digest = raw.baseAddress!.assumingMemoryBound(to: UInt8.self)
            CCryptoBoringSSL_SHA256_Final(digest, &inner)
            CCryptoBoringSSL_SHA256_Update(&outer, digest, raw.count)
            CCryptoBoringSSL_SHA256_Final(digest, &outer)
        }
        return key
    }

    private func stripe(for key: Key) -> NIOLockedValueBox<Stripe> {
        stripes[Int(truncatingIfNeeded: key.words.0 & UInt64(Self.stripeCount - 1))]
    }

    /// The identity cached for `key` if it may still be served at `now`; counts a hit or a miss.
    func identity(for key: Key, now: Double) -> Identity? {
        let identity: Identity? = stripe(for: key).withLockedValue { stripe in
            guard let entry = stripe.entries[key] else { return nil }
            guard now < entry.freshUntil && now <= entry.identity.expiresAt else {
                stripe.entries[key] = nil
                return nil
            }
            return entry.identity
        }
        if identity == nil {
            missCount.wrappingAdd(1, ordering: .relaxed)
        } else {
            hitCount.wrappingAdd(1, ordering: .relaxed)
        }
        return identity
    }

    /// Caches `identity`, verified at `now`, under `key`.
    func insert(_ identity: Identity, for key: Key, now: Double) {
        let freshUntil = now + ttl
        guard now < freshUntil, now <= identity.expiresAt else { return }
        let capacity = capacityPerStripe
        stripe(for: key).withLockedValue { stripe in
            if stripe.entries[key] == nil && stripe.entries.count >= capacity {
                stripe.dropOldest()
            }
            stripe.nextSequence += 1
            stripe.entries[key] = Entry(identity: identity, freshUntil: freshUntil, sequence: stripe.nextSequence)
            stripe.insertions.append((key, stripe.nextSequence))
            if stripe.insertions.count > 2 * capacity { stripe.compact() }
        }
    }
}

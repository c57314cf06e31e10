import Testing

@testable import Gateway

/// The byte-wise comparisons every header name goes through: a wrong answer lets a hop-by-hop,
/// `Impersonate-*` or second `Authorization` header through, or refuses a good one.
@Suite("ASCII case-insensitive header comparisons")
struct ASCIICaseInsensitiveTests {
    @Test("equals ignores ASCII case only, and needs the whole text")
    func equals() {
        for name in ["authorization", "Authorization", "AUTHORIZATION", "aUtHoRiZaTiOn"] {
            #expect(ASCIICaseInsensitive.equals(name, "authorization"), "\(name)")
        }
        for name in ["authorizatio", "authorizationx", "authorization ", " authorization", "", "authorizatiom"] {
            #expect(!ASCIICaseInsensitive.equals(name, "authorization"), "\(name)")
        }
        // Only A-Z fold: '@' and '[' sit beside them, and non-ASCII never folds to ASCII. "hoſt"
        // (LATIN SMALL LETTER LONG S, two bytes) has as many bytes as "hosst", so only the
        // byte comparison can refuse it.
        #expect(!ASCIICaseInsensitive.equals("@", "`"))
        #expect(!ASCIICaseInsensitive.equals("[", "{"))
        #expect(!ASCIICaseInsensitive.equals("ho\u{017F}t", "hosst"))
    }

    @Test("hasPrefix matches a case-folded start, never a longer prefix than the text")
    func hasPrefix() {
        #expect(ASCIICaseInsensitive.hasPrefix("Impersonate-User", "impersonate-"))
        #expect(ASCIICaseInsensitive.hasPrefix("IMPERSONATE-", "impersonate-"))
        #expect(ASCIICaseInsensitive.hasPrefix("impersonate-extra-scopes", "impersonate-"))
        #expect(!ASCIICaseInsensitive.hasPrefix("impersonate", "impersonate-"))
        #expect(!ASCIICaseInsensitive.hasPrefix("x-impersonate-user", "impersonate-"))
        #expect(!ASCIICaseInsensitive.hasPrefix("", "proxy-"))
    }

    @Test("a collection without contiguous storage gets the same answers")
    func nonContiguous() {
        let reversed = "NOITAZIROHTUA".utf8.reversed()
        #expect(reversed.withContiguousStorageIfAvailable { _ in true } == nil)
        #expect(ASCIICaseInsensitive.equals(reversed, "authorization"))
        #expect(!ASCIICaseInsensitive.equals("NOITAZIROHTUB".utf8.reversed(), "authorization"))
        #expect(!ASCIICaseInsensitive.equals("NOITAZIROHTU".utf8.reversed(), "authorization"))
    }

    @Test("list items compare whole, trimmed of spaces and tabs, through substrings")
    func listItems() {
        #expect(ASCIICaseInsensitive.listContains("keep-alive, Upgrade", "upgrade"))
        #expect(ASCIICaseInsensitive.listContains(" \tUPGRADE\t ,close", "upgrade"))
        #expect(!ASCIICaseInsensitive.listContains("upgrades, x-upgrade", "upgrade"))
        #expect(!ASCIICaseInsensitive.listContains("", "upgrade"))
        #expect(!ASCIICaseInsensitive.listContains(",,", "upgrade"))
    }
}

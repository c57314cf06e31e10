import NIOHTTP1
import Testing

@testable import Gateway

/// The `Authorization` parsing of kube-apiserver's bearer-token authenticator
/// (`strings.TrimSpace`, `strings.SplitN(auth, " ", 3)`, scheme compared lowercased, empty token
/// refused), plus our one stricter rule: several `Authorization` headers are refused.
@Suite("Reading the bearer token of a request")
struct BearerTokenTests {
    private func extract(_ values: [String], name: String = "Authorization") -> BearerToken.Extraction {
        BearerToken.extract(from: HTTPHeaders(values.map { (name, $0) } + [("Host", "example")]))
    }

    @Test(
        "kube-apiserver's readings of one Authorization value",
        arguments: [
            ("Bearer abc", "abc"),
            ("bearer abc", "abc"),
            ("BEARER abc", "abc"),
            ("bEaReR abc", "abc"),
            ("Bearer abc extra fields", "abc"),
            ("Bearer abc ", "abc"),
            ("  Bearer abc", "abc"),
            ("\tBearer abc\t", "abc"),
            ("\u{00A0}Bearer abc\u{3000}", "abc"),
            ("Bearer a,b", "a,b"),
            ("Bearer \u{301}abc", "\u{301}abc"),
            ("Bearer tøkén", "tøkén"),
        ])
    func reads(value: String, token: String) {
        #expect(extract([value]) == .token(token))
    }

    @Test(
        "values that carry no token",
        arguments: [
            "", " ", "Bearer", "Bearer ", "Bearer  abc", "Basic dXNlcjpwYXNz", "Bearerabc", "Bearer\tabc",
            "Token abc", "Beare abc", "Bearers abc", "Bearer\u{00A0}abc", "\u{0130}Bearer abc",
        ])
    func missing(value: String) {
        #expect(extract([value]) == .missing)
    }

    @Test("no Authorization header, or several (even identical ones), carry no token")
    func headerCount() {
        #expect(extract([]) == .missing)
        #expect(extract(["Bearer abc", "Bearer abc"]) == .missing)
        #expect(extract(["Bearer abc", "Bearer def"]) == .missing)
    }

    @Test("the header name matches in any case", arguments: ["authorization", "AUTHORIZATION", "AuThOrIzAtIoN"])
    func headerNameCase(name: String) {
        #expect(extract(["Bearer abc"], name: name) == .token("abc"))
        #expect(extract(["Bearer abc", "Bearer abc"], name: name) == .missing)
    }

    @Test("a long token is read whole, byte for byte")
    func longToken() {
        let token = String(repeating: "eyJhbGciOiJSUzI1NiJ9.", count: 5000)
        #expect(extract(["Bearer " + token]) == .token(token))
    }
}

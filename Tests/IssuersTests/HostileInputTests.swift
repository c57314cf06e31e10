import Config
import Logging
import Testbed
import Testing

@testable import Issuers

/// Whatever a client sends as a token, every path that reads it answers with a rejection:
/// never a crash, a hang or unbounded work.
@Suite("Hostile input: the JSON parser")
struct JSONParserHostileTests {
    private func parse(_ text: String) -> JSONValue? {
        JSONParser.parse(Array(text.utf8))
    }

    private func parse(bytes: [UInt8]) -> JSONValue? {
        JSONParser.parse(bytes)
    }

    @Test("nesting is limited; a million open brackets are refused quickly")
    func nesting() {
        let limit = JSONParser.maximumDepth
        #expect(parse(String(repeating: "[", count: limit) + String(repeating: "]", count: limit)) != nil)
        #expect(parse(String(repeating: "[", count: limit + 1) + String(repeating: "]", count: limit + 1)) == nil)
        #expect(
            parse(String(repeating: "{\"a\":", count: limit + 1) + "1" + String(repeating: "}", count: limit + 1))
                == nil)
        #expect(parse(String(repeating: "[", count: 1_000_000)) == nil)
        #expect(JSONParser.parseObject(Array(("{\"a\":" + String(repeating: "[", count: 100_000)).utf8)) == nil)
    }

    @Test("numbers: JSON's grammar only; too large for a Double is infinite, not a crash")
    func numbers() {
        #expect(parse("1e400") == .number(.infinity))
        #expect(parse("-1e400") == .number(-.infinity))
        #expect(parse(String(repeating: "9", count: 10_000)) == .number(.infinity))
        #expect(parse("0." + String(repeating: "0", count: 10_000) + "1") != nil)
        #expect(parse("1800000000") == .number(1_800_000_000))
        #expect(parse("-12.5e1") == .number(-125))
        for invalid in [
            "01", "-", "1.", ".5", "+1", "1e", "1e+", "NaN", "Infinity", "-Infinity", "0x10", "1_000", "--1",
        ] {
            #expect(parse(invalid) == nil, "\(invalid)")
        }
    }

    @Test("duplicate keys: the last value wins, as in Go")
    func duplicateKeys() {
        #expect(parse(#"{"a":1,"a":2}"#) == .object(["a": .number(2)]))
        #expect(parse(#"{"a":{"b":1},"a":"x"}"#) == .object(["a": .string("x")]))
    }

    @Test("strings: escapes, surrogate pairs, and Go's U+FFFD for invalid UTF-8 and lone surrogates")
    func strings() {
        #expect(parse(#""a\"\\\/\b\f\n\r\t""#) == .string("a\"\\/\u{8}\u{C}\n\r\t"))
        #expect(parse(#""\u00e9\u4e2d\ud83d\ude00""#) == .string("é中😀"))
        #expect(parse(#""\ud83d""#) == .string("\u{FFFD}"))
        #expect(parse(#""\ude00x""#) == .string("\u{FFFD}x"))
        #expect(parse(#""\ud83d\u0041""#) == .string("\u{FFFD}A"))
        #expect(parse(#""\u0000""#) == .string("\u{0}"))
        // Invalid UTF-8: one U+FFFD per invalid byte (Go's utf8.DecodeRune), valid bytes kept.
        #expect(parse(bytes: [0x22, 0x61, 0xFF, 0x62, 0x22]) == .string("a\u{FFFD}b"))
        #expect(parse(bytes: [0x22, 0xE2, 0x82, 0x22]) == .string("\u{FFFD}\u{FFFD}"))
        #expect(parse(bytes: [0x22, 0xC0, 0xAF, 0x22]) == .string("\u{FFFD}\u{FFFD}"), "overlong")
        #expect(parse(bytes: [0x22, 0xED, 0xA0, 0x80, 0x22]) == .string("\u{FFFD}\u{FFFD}\u{FFFD}"), "surrogate")
        #expect(
            parse(bytes: [0x22, 0xF4, 0x90, 0x80, 0x80, 0x22]) == .string(String(repeating: "\u{FFFD}", count: 4)),
            "above U+10FFFF")
        #expect(parse(bytes: [0x22, 0xE2, 0x82, 0xAC, 0x22]) == .string("€"))
        for invalid in ["\"a", "\"\\x\"", "\"\\u12\"", "\"\\u12G4\"", "\"tab\there\"", "\"line\nbreak\"", "'a'"] {
            #expect(parse(invalid) == nil, "\(invalid)")
        }
    }

    @Test("documents: one value, nothing after it, no trailing commas, no comments")
    func documents() {
        for invalid in [
            "", " ", "{", "}", "{\"a\"}", "{\"a\":}", "{\"a\":1,}", "[1,]", "[,1]", "{,}", "{\"a\":1}x", "{} {}",
            "{a:1}", "{\"a\":1 \"b\":2}", "/*c*/{}", "{}//", "\u{FEFF}{}", "tru", "nul", "falsey", "[1 2]",
        ] {
            #expect(parse(invalid) == nil, "\(invalid)")
        }
        #expect(parse(" \t\r\n{ \"a\" : [ 1 , true , null ] } \n") != nil)
        #expect(JSONParser.parseObject(Array("[]".utf8)) == nil)
        #expect(JSONParser.parseObject(Array("\"{}\"".utf8)) == nil)
    }

    private func lookup(_ text: String) -> JSONParser.MemberLookup {
        JSONParser.member("iss", ofObject: Array(text.utf8))
    }

    @Test("routing reads the top-level iss alone, under the full parser's rules")
    func issuerLookup() {
        #expect(lookup(#"{"iss":"a"}"#) == .found(.string("a")))
        #expect(lookup(#" { "iss" : "a" , "iss" : "b" } "#) == .found(.string("b")))
        #expect(lookup(#"{"\u0069ss":"b"}"#) == .found(.string("b")))
        #expect(lookup(#"{"x":{"iss":"a"},"y":["iss"]}"#) == .absent)
        #expect(lookup(#"{"iss":5}"#) == .found(.number(5)))
        #expect(lookup(#"{"issuer":"a","is":"b"}"#) == .absent)
        #expect(lookup("{}") == .absent)
        for invalid in [
            "", "[]", "\"iss\"", #"{"iss":"a"} x"#, #"{"iss":"a",}"#, #"{"x":[1,]}"#, #"{"x":"\q"}"#,
            #"{"x":01}"#, "{\"x\":\"a\u{1}\"}", #"{"iss":"a""#, String(repeating: "{\"a\":", count: 100) + "1",
        ] {
            #expect(lookup(invalid) == .invalid, "\(invalid)")
        }
    }

    @Test("the iss lookup and the full parser agree on what is a valid object")
    func issuerLookupAgreesWithParser() {
        var generator = SplitMix64(seed: 7)
        let alphabet = Array(#"{}[]":,0123456789-.eEtrufalsn\ iss"#.utf8) + [0x01, 0xFF]
        for _ in 0..<4_000 {
            var bytes = Array(#"{"iss":"a","#.utf8)
            for _ in 0..<Int(generator.next() % 24) {
                bytes.append(alphabet[Int(generator.next() % UInt64(alphabet.count))])
            }
            let parsed = JSONParser.parseObject(bytes)
            let looked = JSONParser.member("iss", ofObject: bytes)
            #expect((parsed == nil) == (looked == .invalid), "\(String(decoding: bytes, as: UTF8.self))")
            if let parsed { #expect(looked == (parsed["iss"].map { .found($0) } ?? .absent)) }
        }
    }

    @Test("random bytes and random JSON-ish text never crash the parser")
    func fuzz() {
        var generator = SplitMix64(seed: 0x5EED)
        let alphabet =
            Array("{}[]\":,0123456789-+.eEtrufalsn\\u \t\n abcdef".utf8) + [0x00, 0x1F, 0x7F, 0x80, 0xC3, 0xFF]
        var parsedCount = 0
        for round in 0..<4_000 {
            let length = Int(generator.next() % 64)
            let bytes: [UInt8] = (0..<length).map { _ in
                round.isMultiple(of: 2)
                    ? UInt8(truncatingIfNeeded: generator.next())
                    : alphabet[Int(generator.next() % UInt64(alphabet.count))]
            }
            if parse(bytes: bytes) != nil { parsedCount += 1 }
        }
        #expect(parsedCount < 4_000)
    }
}

@Suite("Hostile input: tokens")
struct HostileTokenTests {
    let fixture: VerifierFixture

    init() throws {
        fixture = try VerifierFixture()
    }

    /// A token with `header` and `claims` as raw JSON text, signed with the fixture's key.
    private func token(header: String = #"{"alg":"RS256","kid":"rsa-1"}"#, claims: String) throws -> String {
        let signingInput = TokenMinter.encodePart(header) + "." + TokenMinter.encodePart(claims)
        let signature = try fixture.keys[0].sign(Array(signingInput.utf8), algorithm: "RS256")
        return signingInput + "." + Base64URLText.encode(signature)
    }

    private var validClaims: String { VerifierFixture.claims.serialized }

    private func isMalformed(_ result: Result<Identity, TokenRejection>) -> Bool {
        if case .malformed = result.rejection { return true }
        return false
    }

    @Test("deep nesting in the header or the claims is malformed")
    func deepNesting() throws {
        let deep = String(repeating: "[", count: 5_000) + String(repeating: "]", count: 5_000)
        #expect(isMalformed(fixture.verify(try token(claims: #"{"x":\#(deep)}"#))))
        #expect(isMalformed(fixture.verify(try token(header: #"{"alg":"RS256","x":\#(deep)}"#, claims: validClaims))))
    }

    @Test("alg that is not a string, or missing, is malformed")
    func nonStringAlgorithm() throws {
        for alg in ["1", "null", "true", "[\"RS256\"]", "{\"RS256\":1}"] {
            let result = fixture.verify(try token(header: #"{"alg":\#(alg),"kid":"rsa-1"}"#, claims: validClaims))
            #expect(result.rejection == .malformed("header has no alg"), "\(alg)")
        }
        #expect(
            fixture.verify(try token(header: #"{"kid":"rsa-1"}"#, claims: validClaims)).rejection
                == .malformed("header has no alg"))
        let long = String(repeating: "A", count: 20_000)
        #expect(
            fixture.verify(try token(header: #"{"alg":"\#(long)"}"#, claims: validClaims)).rejection
                == .algorithmNotAllowed(String(long.prefix(16))))
    }

    @Test("a kid that is very long or not a string is refused without a crash")
    func hostileKeyID() throws {
        let long = String(repeating: "k", count: 40_000)
        #expect(
            fixture.verify(try token(header: #"{"alg":"RS256","kid":"\#(long)"}"#, claims: validClaims)).rejection
                == .unknownKey)
        for kid in ["1", "[\"rsa-1\"]", "{}", "true"] {
            #expect(
                fixture.verify(try token(header: #"{"alg":"RS256","kid":\#(kid)}"#, claims: validClaims)).rejection
                    == .malformed("header kid is not a string"), "\(kid)")
        }
    }

    @Test("invalid UTF-8 in a claim string is read as Go reads it (U+FFFD), never a crash")
    func invalidUTF8() throws {
        var claims = Array(#"{"iss":"https://issuer.example.com","aud":"kubernetes","email":"al"#.utf8)
        claims += [0xFF, 0xFE]
        claims += Array(#"ice","exp":\#(VerifierFixture.now + 60)}"#.utf8)
        let header = TokenMinter.encodePart(#"{"alg":"RS256","kid":"rsa-1"}"#)
        let signingInput = header + "." + Base64URLText.encode(claims)
        let signature = try fixture.keys[0].sign(Array(signingInput.utf8), algorithm: "RS256")
        let result = fixture.verify(signingInput + "." + Base64URLText.encode(signature))
        #expect(result.identity?.username == "al\u{FFFD}\u{FFFD}ice")
    }

    @Test("escaped control characters in the username are refused (never a header)")
    func escapedControlCharacters() throws {
        for escape in [#"\r\n"#, #"\u0000"#, #"\u001b"#, #"\u0085"#] {
            let claims =
                #"{"iss":"https://issuer.example.com","aud":"kubernetes","email":"a\#(escape)b","#
                + #""exp":\#(VerifierFixture.now + 60)}"#
            #expect(fixture.verify(try token(claims: claims)).rejection == .controlCharacter(field: "username"))
        }
    }

    @Test("huge claim values and many claims are handled within the 64 KiB token bound")
    func largeClaims() throws {
        let manyGroups = "[" + (0..<3_000).map { "\"g\($0)\"" }.joined(separator: ",") + "]"
        let claims =
            #"{"iss":"https://issuer.example.com","aud":"kubernetes","email":"alice@example.com","#
            + #""groups":\#(manyGroups),"exp":\#(VerifierFixture.now + 60)}"#
        #expect(fixture.verify(try token(claims: claims)).identity?.groups.count == 3_000)
        let manyKeys = (0..<3_000).map { "\"k\($0)\":\($0)" }.joined(separator: ",")
        #expect(
            fixture.verify(try token(claims: #"{\#(manyKeys),"iss":"https://issuer.example.com"}"#)).rejection
                == .audienceMismatch)
    }

    @Test("random corruptions of a valid token are refused, never accepted or crashing")
    func corruptions() throws {
        let valid = try fixture.mint()
        var generator = SplitMix64(seed: 42)
        let bytes = Array(valid.utf8)
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ ".utf8)
        for _ in 0..<200 {
            var corrupted = bytes
            for _ in 0..<(1 + Int(generator.next() % 3)) {
                let index = Int(generator.next() % UInt64(corrupted.count))
                corrupted[index] = alphabet[Int(generator.next() % UInt64(alphabet.count))]
            }
            guard corrupted != bytes else { continue }
            let text = String(decoding: corrupted, as: UTF8.self)
            #expect(fixture.verify(text).identity == nil, "\(text)")
        }
    }

    @Test("hostile tokens through IssuerSet, cache on: refused, none cached, nothing fetched")
    func throughIssuerSet() async throws {
        let idp = try await StandInIssuer()
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let issuers = try IssuerSet(
            configuration: ProxyConfiguration(issuers: [
                IssuerConfiguration(
                    url: idp.url, audiences: ["kubernetes"],
                    certificateAuthorityPEM: idp.certificateAuthority.certificatePEM)
            ]),
            logger: logger)
        let deep = String(repeating: "[", count: 20_000)
        let hostile = [
            "", ".", "..", "...", "....", String(repeating: ".", count: 70_000), String(repeating: "a", count: 65_537),
            TokenMinter.encodePart(#"{"alg":"none"}"#) + "." + TokenMinter.encodePart(#"{"iss":"\#(idp.url)"}"#) + ".",
            TokenMinter.encodePart(deep) + "." + TokenMinter.encodePart(deep) + ".c2ln",
            TokenMinter.encodePart(#"{"alg":"RS256"}"#) + "." + TokenMinter.encodePart(#"{"iss":[\#(deep)}"#) + ".c2ln",
            "Bearer " + (try idp.mint()), (try idp.mint()) + " ", "\u{0}" + (try idp.mint()),
        ]
        // The set fetches its keys once on its own; hostile tokens must add no fetch.
        let deadline = ContinuousClock.now + .seconds(30)
        while !issuers.issuers[0].status.isReady, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        let fetchesBefore = idp.jwksFetches
        for token in hostile {
            #expect(issuers.authenticate(token: token).identity == nil)
        }
        #expect(issuers.tokenCache?.count == 0)
        #expect(idp.jwksFetches == fetchesBefore)
        await issuers.shutdown()
        await idp.stop()
    }
}

import Foundation
import Logging
import Testing

@testable import Main

/// The text format's values: a plain word bare, anything else a quoted JSON string, so a value
/// can never forge another field (`user=a status=200`) or split the line.
@Suite("Log lines in text format")
struct LogLineTests {
    private func field(_ value: String) -> String {
        let line = ProxyLogHandler.line(
            format: .text, time: Date(timeIntervalSince1970: 0), level: .info, message: "request",
            metadata: ["user": .string(value)])
        return String(line.dropFirst("1970-01-01T00:00:00.000Z info request user=".count).dropLast())
    }

    @Test(
        "plain words stay bare; spaces, quotes, =, controls and DEL are quoted and escaped",
        arguments: [
            ("alice@example.com", "alice@example.com"),
            ("tøkén-ünïcode", "tøkén-ünïcode"),
            ("system:serviceaccount:ns:name", "system:serviceaccount:ns:name"),
            ("", #""""#),
            ("a b", #""a b""#),
            ("a status=200", #""a status=200""#),
            ("say \"hi\"", #""say \"hi\"""#),
            ("x=y", #""x=y""#),
            ("tab\there", #""tab\there""#),
            ("line\nbreak", #""line\nbreak""#),
            ("del\u{7F}", #""del\u007f""#),
        ])
    func values(value: String, written: String) {
        #expect(field(value) == written)
    }
}

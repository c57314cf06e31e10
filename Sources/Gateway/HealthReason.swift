/// Makes an error text fit for a health answer, which anyone who can reach the port reads: one
/// line, bounded, and nothing that looks like a bearer token or URL credentials.
enum HealthReason {
    static let maximumLength = 300

    static func sanitize(_ text: String) -> String {
        var words: [String] = []
        for word in text.split(whereSeparator: { $0.isWhitespace || $0.isNewline }) {
            words.append(redact(word))
        }
        var result = words.joined(separator: " ")
        result.unicodeScalars.removeAll { $0.value < 0x20 || $0.value == 0x7F }
        if result.count > maximumLength { result = String(result.prefix(maximumLength)) + "..." }
        return result
    }

    /// A word that looks secret loses it: a JWT-like token (base64url runs joined by dots, the
    /// first two of 16 characters or more), a long base64url run, or a URL's user information.
    private static func redact(_ word: Substring) -> String {
        if let scheme = word.firstRange(of: "://"), let at = word[scheme.upperBound...].firstIndex(of: "@") {
            let authority = word[scheme.upperBound..<at]
            if !authority.contains("/") {
                return String(word[..<scheme.upperBound]) + "[redacted]" + String(word[at...])
            }
        }
        // Quotes or brackets around a token do not hide it.
        let opening: Set<Character> = ["\"", "'", "`", "(", "[", "{", "<"]
        let closing: Set<Character> = ["\"", "'", "`", ")", "]", "}", ">", ",", ";", ":", "."]
        var trimmed = word.drop { opening.contains($0) }
        while let last = trimmed.last, closing.contains(last) { trimmed = trimmed.dropLast() }
        let segments = trimmed.split(separator: ".", omittingEmptySubsequences: false)
        let base64URL = { (segment: Substring, minimum: Int) in
            segment.count >= minimum
                && segment.unicodeScalars.allSatisfy {
                    ("A"..."Z").contains($0) || ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "-"
                        || $0 == "_"
                }
        }
        if segments.count >= 3 && segments.prefix(2).allSatisfy({ base64URL($0, 16) }) { return "[redacted token]" }
        if base64URL(trimmed, 40) { return "[redacted]" }
        return String(word)
    }
}

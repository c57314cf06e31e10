/// ASCII case-insensitive comparisons of header names, schemes and list values, byte by byte:
/// no lowercased copies on the path every request takes. The expected text is always lowercase
/// ASCII. Header names are ASCII tokens (the decoder refuses anything else), and no character
/// outside ASCII lowercases to a letter of `bearer`, so for what is compared here this decides
/// what Go's `strings.ToLower(x) == "..."` decides.
enum ASCIICaseInsensitive {
    /// Whether `text` equals `lowercase`, ignoring ASCII case.
    static func equals(_ text: String, _ lowercase: String) -> Bool {
        equals(text.utf8, lowercase)
    }

    static func equals(_ bytes: some Collection<UInt8>, _ lowercase: String) -> Bool {
        bytes.count == lowercase.utf8.count && startsWith(bytes, lowercase)
    }

    /// Whether `text` begins with `lowercase`, ignoring ASCII case.
    static func hasPrefix(_ text: String, _ lowercase: String) -> Bool {
        text.utf8.count >= lowercase.utf8.count && startsWith(text.utf8, lowercase)
    }

    /// Whether the first bytes of `bytes` (at least as many as `lowercase` has) are `lowercase`,
    /// ignoring ASCII case. Header names and literals are contiguous UTF-8, compared through
    /// their buffers: every header of every request meets a dozen of these comparisons, and a
    /// generic `zip` of two UTF-8 views was 1.4 % of the proxy's CPU.
    private static func startsWith(_ bytes: some Collection<UInt8>, _ lowercase: String) -> Bool {
        let fast = bytes.withContiguousStorageIfAvailable { text in
            lowercase.utf8.withContiguousStorageIfAvailable { expected in
                for index in 0..<expected.count where lowered(text[index]) != expected[index] { return false }
                return true
            }
        }
        if let outcome = fast ?? nil { return outcome }
        return zip(bytes, lowercase.utf8).allSatisfy { lowered($0) == $1 }
    }

    /// Whether the comma-separated list `value` has an item equal to `lowercase`, ignoring ASCII
    /// case and the spaces and tabs around items (as NIO's `canonicalForm` splits it).
    static func listContains(_ value: String, _ lowercase: String) -> Bool {
        var found = false
        forEachListItem(in: value) { item in
            if !found && equals(item, lowercase) { found = true }
        }
        return found
    }

    /// Calls `body` with the bytes of each non-empty item of the comma-separated list `value`,
    /// spaces and tabs around it trimmed.
    static func forEachListItem(in value: String, _ body: (Substring.UTF8View) -> Void) {
        let bytes = Substring(value).utf8
        var start = bytes.startIndex
        while start < bytes.endIndex {
            let end = bytes[start...].firstIndex(of: UInt8(ascii: ",")) ?? bytes.endIndex
            var item = bytes[start..<end]
            while let first = item.first, isListSpace(first) { item = item.dropFirst() }
            while let last = item.last, isListSpace(last) { item = item.dropLast() }
            if !item.isEmpty { body(item) }
            start = end < bytes.endIndex ? bytes.index(after: end) : end
        }
    }

    private static func isListSpace(_ byte: UInt8) -> Bool {
        byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t")
    }

    private static func lowered(_ byte: UInt8) -> UInt8 {
        byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") ? byte | 0x20 : byte
    }
}

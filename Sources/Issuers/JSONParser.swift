/// A strict JSON parser for token headers and claims, reading them as Go's `encoding/json`
/// does for kube-apiserver and go-oidc:
///
/// - the grammar of RFC 8259 exactly (Go's `checkValid`): one value, whitespace around it, no
///   trailing commas, comments, leading zeros, `NaN` or single quotes;
/// - a duplicated object key keeps its last value;
/// - invalid UTF-8 inside a string becomes U+FFFD, one per invalid byte, and an unpaired
///   `\u` surrogate escape becomes U+FFFD, as Go's `unquote` does; raw control characters
///   in a string are an error;
/// - numbers are read as `Double`; one too large for it becomes an infinity, which callers
///   that need a number refuse (Go fails to unmarshal it).
///
/// Unlike Go, nesting is limited to `maximumDepth` levels: a token has no reason to nest deeper,
/// and the limit keeps hostile input from exhausting the stack.
struct JSONParser {
    /// Arrays and objects nested deeper than this are refused (Go allows 10 000).
    static let maximumDepth = 64

    let bytes: UnsafeBufferPointer<UInt8>
    var position = 0

    private init(bytes: UnsafeBufferPointer<UInt8>) {
        self.bytes = bytes
    }

    /// Parses `input` as one JSON object, or returns nil for anything else.
    static func parseObject(_ input: some Collection<UInt8>) -> [String: JSONValue]? {
        let result = input.withContiguousStorageIfAvailable { buffer -> [String: JSONValue]? in
            var parser = JSONParser(bytes: buffer)
            return parser.parseDocumentObject()
        }
        if let result { return result }
        return Array(input).withUnsafeBufferPointer { buffer in
            var parser = JSONParser(bytes: buffer)
            return parser.parseDocumentObject()
        }
    }

    /// Parses `input` as any JSON value, or returns nil when it is not valid JSON.
    static func parse(_ input: [UInt8]) -> JSONValue? {
        input.withUnsafeBufferPointer { buffer in
            var parser = JSONParser(bytes: buffer)
            parser.skipWhitespace()
            guard let value = parser.parseValue(depth: 0) else { return nil }
            parser.skipWhitespace()
            return parser.position == buffer.count ? value : nil
        }
    }

    /// Validates `input` as one JSON object and returns the value of its top-level member `name`
    /// (the last one, if repeated; nil if absent), without building the rest of the document:
    /// enough to route a token by its `iss` before paying for its claims. Returns `.invalid`
    /// when `input` is not a JSON object.
    static func member(_ name: StaticString, ofObject input: [UInt8]) -> MemberLookup {
        input.withUnsafeBufferPointer { buffer in
            var parser = JSONParser(bytes: buffer)
            return parser.findMember(name)
        }
    }

    enum MemberLookup: Equatable {
        case invalid
        case absent
        case found(JSONValue)
    }

    private mutating func findMember(_ name: StaticString) -> MemberLookup {
        skipWhitespace()
        guard position < bytes.count, bytes[position] == UInt8(ascii: "{") else { return .invalid }
        position += 1
        var found: JSONValue?
        skipWhitespace()
        if position < bytes.count, bytes[position] == UInt8(ascii: "}") {
            position += 1
        } else {
            members: while true {
                skipWhitespace()
                guard position < bytes.count, bytes[position] == UInt8(ascii: "\""), let isName = keyEquals(name)
                else {
                    return .invalid
                }
                skipWhitespace()
                guard position < bytes.count, bytes[position] == UInt8(ascii: ":") else { return .invalid }
                position += 1
                skipWhitespace()
                if isName {
                    guard let value = parseValue(depth: 1) else { return .invalid }
                    found = value
                } else {
                    guard skipValue(depth: 1) else { return .invalid }
                }
                skipWhitespace()
                guard position < bytes.count else { return .invalid }
                switch bytes[position] {
                case UInt8(ascii: ","):
                    position += 1
                case UInt8(ascii: "}"):
                    position += 1
                    break members
                default:
                    return .invalid
                }
            }
        }
        skipWhitespace()
        guard position == bytes.count else { return .invalid }
        return found.map { .found($0) } ?? .absent
    }

    /// At `"`; reads an object key and says whether it is `name`, comparing bytes when the key
    /// has no escapes and decoding it as `parseString` does when it has.
    private mutating func keyEquals(_ name: StaticString) -> Bool? {
        var index = position + 1
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") {
                let start = position + 1
                position = index + 1
                guard index - start == name.utf8CodeUnitCount else { return false }
                for offset in 0..<name.utf8CodeUnitCount where bytes[start + offset] != name.utf8Start[offset] {
                    return false
                }
                return true
            }
            if byte == UInt8(ascii: "\\") || byte < 0x20 || byte >= 0x80 { break }
            index += 1
        }
        return parseString().map { $0 == name.description }
    }

    private mutating func parseDocumentObject() -> [String: JSONValue]? {
        skipWhitespace()
        guard position < bytes.count, bytes[position] == UInt8(ascii: "{") else { return nil }
        guard let object = parseObject(depth: 1) else { return nil }
        skipWhitespace()
        return position == bytes.count ? object : nil
    }

    mutating func skipWhitespace() {
        while position < bytes.count {
            switch bytes[position] {
            case 0x20, 0x09, 0x0A, 0x0D: position += 1
            default: return
            }
        }
    }

    mutating func parseValue(depth: Int) -> JSONValue? {
        guard position < bytes.count else { return nil }
        switch bytes[position] {
        case UInt8(ascii: "{"):
            guard depth < Self.maximumDepth, let object = parseObject(depth: depth + 1) else { return nil }
            return .object(object)
        case UInt8(ascii: "["):
            guard depth < Self.maximumDepth, let array = parseArray(depth: depth + 1) else { return nil }
            return .array(array)
        case UInt8(ascii: "\""):
            return parseString().map { .string($0) }
        case UInt8(ascii: "t"):
            return consumeLiteral("true") ? .bool(true) : nil
        case UInt8(ascii: "f"):
            return consumeLiteral("false") ? .bool(false) : nil
        case UInt8(ascii: "n"):
            return consumeLiteral("null") ? .null : nil
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return parseNumber().map { .number($0) }
        default:
            return nil
        }
    }

    /// At `{`; reads up to and including the matching `}`.
    private mutating func parseObject(depth: Int) -> [String: JSONValue]? {
        position += 1
        var object = [String: JSONValue](minimumCapacity: 8)
        skipWhitespace()
        if position < bytes.count, bytes[position] == UInt8(ascii: "}") {
            position += 1
            return object
        }
        while true {
            skipWhitespace()
            guard position < bytes.count, bytes[position] == UInt8(ascii: "\""), let key = parseString() else {
                return nil
            }
            skipWhitespace()
            guard position < bytes.count, bytes[position] == UInt8(ascii: ":") else { return nil }
            position += 1
            skipWhitespace()
            guard let value = parseValue(depth: depth) else { return nil }
            object[key] = value  // a duplicate key keeps its last value, as in Go
            skipWhitespace()
            guard position < bytes.count else { return nil }
            switch bytes[position] {
            case UInt8(ascii: ","):
                position += 1
            case UInt8(ascii: "}"):
                position += 1
                return object
            default:
                return nil
            }
        }
    }

    /// At `[`; reads up to and including the matching `]`.
    private mutating func parseArray(depth: Int) -> [JSONValue]? {
        position += 1
        var array: [JSONValue] = []
        skipWhitespace()
        if position < bytes.count, bytes[position] == UInt8(ascii: "]") {
            position += 1
            return array
        }
        while true {
            skipWhitespace()
            guard let value = parseValue(depth: depth) else { return nil }
            array.append(value)
            skipWhitespace()
            guard position < bytes.count else { return nil }
            switch bytes[position] {
            case UInt8(ascii: ","):
                position += 1
            case UInt8(ascii: "]"):
                position += 1
                return array
            default:
                return nil
            }
        }
    }

    mutating func consumeLiteral(_ literal: StaticString) -> Bool {
        let count = literal.utf8CodeUnitCount
        guard bytes.count - position >= count else { return false }
        let expected = UnsafeBufferPointer(start: literal.utf8Start, count: count)
        for offset in 0..<count where bytes[position + offset] != expected[offset] { return false }
        position += count
        return true
    }

    /// A number in JSON's grammar, as a `Double` (infinite when out of range).
    mutating func parseNumber() -> Double? {
        let start = position
        guard skipNumber() else { return nil }
        let negative = bytes[start] == UInt8(ascii: "-")
        let digitsStart = negative ? start + 1 : start
        // Integers of up to 15 digits fit a Double exactly: the common case (timestamps) needs no text.
        if position - digitsStart <= 15 {
            var value: Int64 = 0
            var isInteger = true
            for index in digitsStart..<position {
                let digit = bytes[index] &- UInt8(ascii: "0")
                guard digit < 10 else {
                    isInteger = false
                    break
                }
                value = value * 10 + Int64(digit)
            }
            if isInteger { return Double(negative ? -value : value) }
        }
        let text = String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<position]), as: UTF8.self)
        return Double(text) ?? (negative ? -.infinity : .infinity)
    }

    func isDigit(_ byte: UInt8) -> Bool {
        byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")
    }

    /// At `"`; reads up to and including the closing quote.
    mutating func parseString() -> String? {
        position += 1
        let start = position
        // Fast path: printable ASCII without escapes is the string's bytes as they are.
        while position < bytes.count {
            let byte = bytes[position]
            if byte == UInt8(ascii: "\"") {
                let text = String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<position]), as: UTF8.self)
                position += 1
                return text
            }
            if byte == UInt8(ascii: "\\") || byte < 0x20 || byte >= 0x80 { break }
            position += 1
        }
        var decoded = Array(bytes[start..<position])
        while position < bytes.count {
            let byte = bytes[position]
            switch byte {
            case UInt8(ascii: "\""):
                position += 1
                return String(decoding: decoded, as: UTF8.self)
            case UInt8(ascii: "\\"):
                guard decodeEscape(into: &decoded) else { return nil }
            case 0..<0x20:
                return nil
            case 0x80...:
                let length = Self.validUTF8SequenceLength(bytes, at: position)
                if length == 0 {
                    decoded.append(contentsOf: [0xEF, 0xBF, 0xBD])
                    position += 1
                } else {
                    decoded.append(contentsOf: bytes[position..<position + length])
                    position += length
                }
            default:
                decoded.append(byte)
                position += 1
            }
        }
        return nil
    }

    /// At `\`; appends the escaped character's UTF-8 bytes.
    private mutating func decodeEscape(into decoded: inout [UInt8]) -> Bool {
        position += 1
        guard position < bytes.count else { return false }
        let byte = bytes[position]
        position += 1
        switch byte {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): decoded.append(byte)
        case UInt8(ascii: "b"): decoded.append(0x08)
        case UInt8(ascii: "f"): decoded.append(0x0C)
        case UInt8(ascii: "n"): decoded.append(0x0A)
        case UInt8(ascii: "r"): decoded.append(0x0D)
        case UInt8(ascii: "t"): decoded.append(0x09)
        case UInt8(ascii: "u"):
            guard let unit = readHex4(at: position) else { return false }
            position += 4
            var scalar = UInt32(unit)
            if (0xD800...0xDFFF).contains(unit) {
                // A high surrogate followed by an escaped low surrogate is one character;
                // anything else is U+FFFD, and a following escape is read on its own (Go's rule).
                if unit <= 0xDBFF, position + 1 < bytes.count, bytes[position] == UInt8(ascii: "\\"),
                    bytes[position + 1] == UInt8(ascii: "u"), let low = readHex4(at: position + 2),
                    (0xDC00...0xDFFF).contains(low)
                {
                    scalar = 0x10000 + ((UInt32(unit) - 0xD800) << 10) + (UInt32(low) - 0xDC00)
                    position += 6
                } else {
                    scalar = 0xFFFD
                }
            }
            decoded.append(contentsOf: String(Unicode.Scalar(scalar) ?? "\u{FFFD}").utf8)
        default:
            return false
        }
        return true
    }

    func readHex4(at index: Int) -> UInt16? {
        guard index + 4 <= bytes.count else { return nil }
        var value: UInt16 = 0
        for offset in 0..<4 {
            let byte = bytes[index + offset]
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            default: return nil
            }
            value = value << 4 | UInt16(digit)
        }
        return value
    }

    /// The length of the well-formed UTF-8 sequence starting at `index` (no overlong forms,
    /// no surrogates, nothing past U+10FFFF), or 0 if there is none: Go's `utf8.DecodeRune` rules.
    static func validUTF8SequenceLength(_ bytes: UnsafeBufferPointer<UInt8>, at index: Int) -> Int {
        let lead = bytes[index]
        let length: Int
        var secondRange: ClosedRange<UInt8> = 0x80...0xBF
        switch lead {
        case 0xC2...0xDF: length = 2
        case 0xE0:
            length = 3
            secondRange = 0xA0...0xBF
        case 0xE1...0xEC, 0xEE...0xEF: length = 3
        case 0xED:
            length = 3
            secondRange = 0x80...0x9F
        case 0xF0:
            length = 4
            secondRange = 0x90...0xBF
        case 0xF1...0xF3: length = 4
        case 0xF4:
            length = 4
            secondRange = 0x80...0x8F
        default: return 0
        }
        guard index + length <= bytes.count, secondRange.contains(bytes[index + 1]) else { return 0 }
        for offset in 2..<length where !(0x80...0xBF).contains(bytes[index + offset]) { return 0 }
        return length
    }
}

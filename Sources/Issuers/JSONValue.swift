/// A JSON value as a token's header or claims carry it.
public enum JSONValue: Sendable, Hashable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    /// Parses a JSON object, or returns nil for anything else (including invalid JSON).
    static func parseObject(_ bytes: [UInt8]) -> [String: JSONValue]? {
        JSONParser.parseObject(bytes)
    }

    /// The value as Go's `json.Unmarshal` into a `string` sees it: a string, or `""` for null;
    /// nil when it is some other type (an unmarshal error).
    var goString: String? {
        switch self {
        case .string(let text): text
        case .null: ""
        default: nil
        }
    }

    /// The value as go-oidc's `jsonTime` reads it, in whole seconds: a number, or a string holding
    /// a JSON number. nil when Go fails to unmarshal it: another type, `null` (go-oidc reads it
    /// as an empty `json.Number`, which does not parse) or a number beyond `float64`.
    /// A finite value outside `int64` becomes `Int64.min`, a time long past, as Go's
    /// `int64(float64)` gives on amd64 (arm64 saturates instead; the refusing reading is kept).
    /// Integers within 512 of `Int64.max` round up past it here, where Go reads them exactly:
    /// such an `exp` is refused here and accepted there, the safe side of a nonsensical value.
    var goUnixTime: Double? {
        let value: Double
        switch self {
        case .number(let number):
            value = number
        case .string(let text):
            guard Self.isJSONNumber(text), let number = Double(text) else { return nil }
            value = number
        default:
            return nil
        }
        guard value.isFinite else { return nil }
        guard value > -9_223_372_036_854_775_808.0 && value < 9_223_372_036_854_775_808.0 else {
            return Double(Int64.min)
        }
        return value.rounded(.towardZero)
    }

    /// Whether `text` is a number in JSON's grammar (what Go accepts as a `json.Number` string).
    static func isJSONNumber(_ text: String) -> Bool {
        var bytes = Substring(text).utf8[...]
        func digits() -> Int {
            var count = 0
            while let byte = bytes.first, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) {
                bytes = bytes.dropFirst()
                count += 1
            }
            return count
        }
        if bytes.first == UInt8(ascii: "-") { bytes = bytes.dropFirst() }
        if bytes.first == UInt8(ascii: "0") {
            bytes = bytes.dropFirst()
        } else if digits() == 0 {
            return false
        }
        if bytes.first == UInt8(ascii: ".") {
            bytes = bytes.dropFirst()
            if digits() == 0 { return false }
        }
        if bytes.first == UInt8(ascii: "e") || bytes.first == UInt8(ascii: "E") {
            bytes = bytes.dropFirst()
            if bytes.first == UInt8(ascii: "+") || bytes.first == UInt8(ascii: "-") { bytes = bytes.dropFirst() }
            if digits() == 0 { return false }
        }
        return bytes.isEmpty
    }
}

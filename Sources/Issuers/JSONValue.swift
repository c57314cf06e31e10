import FoundationEssentials

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
        guard let value = try? JSONDecoder().decode(JSONValue.self, from: Data(bytes)),
            case .object(let object) = value
        else { return nil }
        return object
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

    /// The value as go-oidc's `jsonTime` sees it: a number, or a string holding a JSON number,
    /// truncated to whole seconds. `.some(nil)` for null (a zero time); nil when unparsable.
    var goUnixTime: Double?? {
        switch self {
        case .null:
            return .some(nil)
        case .number(let value):
            return .some(value.rounded(.towardZero))
        case .string(let text):
            guard Self.isJSONNumber(text), let value = Double(text) else { return nil }
            return .some(value.rounded(.towardZero))
        default:
            return nil
        }
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

extension JSONValue: Decodable {
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode(Double.self) {
            self = .number(value)
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode([JSONValue].self) {
            self = .array(value)
        } else {
            self = .object(try container.decode([String: JSONValue].self))
        }
    }
}

/// JSON string literals, for the few places that write JSON by hand: Status bodies, JSON log
/// lines, and the effective configuration (YAML reads JSON's double-quoted strings the same way).
public enum JSONText {
    /// `text` as a JSON string literal: quotes, backslashes and every control character
    /// (DEL included) escaped, so the result is always one line.
    public static func quoted(_ text: String) -> String {
        var result = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": result += "\\\""
            case "\\": result += "\\\\"
            case "\n": result += "\\n"
            case "\r": result += "\\r"
            case "\t": result += "\\t"
            default:
                if scalar.value < 0x20 || scalar.value == 0x7F {
                    let hex = String(scalar.value, radix: 16)
                    result += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    result.unicodeScalars.append(scalar)
                }
            }
        }
        return result + "\""
    }
}

/// Durations written as Go's `time.ParseDuration` (and so Kubernetes' `metav1.Duration`) reads
/// them: `10s`, `1m30s`, `1.5h`, `300ms`, `0`.
enum GoDuration {
    private static let units: [(String, Double)] = [
        ("ns", 1e-9), ("us", 1e-6), ("µs", 1e-6), ("μs", 1e-6), ("ms", 1e-3), ("s", 1), ("m", 60), ("h", 3600),
    ]

    /// Parses `text`; nil when it is not a Go duration. Negative durations parse (callers decide).
    static func parse(_ text: String) -> Duration? {
        var rest = Substring(text)
        var negative = false
        if let sign = rest.first, sign == "-" || sign == "+" {
            negative = sign == "-"
            rest = rest.dropFirst()
        }
        if rest == "0" { return .zero }
        guard !rest.isEmpty else { return nil }
        var seconds = 0.0
        while !rest.isEmpty {
            let number = rest.prefix { $0.isASCII && ($0.isNumber || $0 == ".") }
            guard !number.isEmpty, number != ".", number.filter({ $0 == "." }).count <= 1, let value = Double(number)
            else { return nil }
            rest = rest.dropFirst(number.count)
            let unitText = rest.prefix { !($0.isASCII && ($0.isNumber || $0 == ".")) }
            guard let unit = units.first(where: { $0.0 == unitText }) else { return nil }
            rest = rest.dropFirst(unitText.count)
            seconds += value * unit.1
        }
        guard seconds.isFinite, seconds < 9.2e9 else { return nil }
        let duration = Duration.nanoseconds(Int64((seconds * 1e9).rounded()))
        return negative ? .zero - duration : duration
    }

    /// Formats like Go's `Duration.String`: `10s`, `1m30s`, `1h0m0s`, `1.5s`, `0s`.
    static func format(_ duration: Duration) -> String {
        let (wholeSeconds, attoseconds) = duration.components
        if wholeSeconds == 0 && attoseconds == 0 { return "0s" }
        let nanoseconds = wholeSeconds * 1_000_000_000 + attoseconds / 1_000_000_000
        let sign = nanoseconds < 0 ? "-" : ""
        let magnitude = nanoseconds.magnitude
        if magnitude < 1_000_000_000 {
            if magnitude % 1_000_000 == 0 { return "\(sign)\(magnitude / 1_000_000)ms" }
            return "\(sign)\(Double(magnitude) / 1e6)ms"
        }
        let hours = magnitude / 3_600_000_000_000
        let minutes = magnitude / 60_000_000_000 % 60
        let secondsPart = magnitude % 60_000_000_000
        var text = sign
        if hours > 0 { text += "\(hours)h" }
        if hours > 0 || minutes > 0 { text += "\(minutes)m" }
        if secondsPart % 1_000_000_000 == 0 {
            text += "\(secondsPart / 1_000_000_000)s"
        } else {
            text += "\(Double(secondsPart) / 1e9)s"
        }
        return text
    }
}

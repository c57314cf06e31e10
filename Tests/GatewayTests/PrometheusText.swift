import Testbed

/// A scrape parsed as the Prometheus text exposition format (0.0.4): every line is a comment
/// (`# TYPE`, `# HELP`) or a sample `name{label="value",...} number`; anything else is an error.
struct PrometheusText {
    struct Sample: Equatable {
        var name: String
        var labels: [String: String]
        var value: Double
    }

    let samples: [Sample]
    /// Metric family name to its `# TYPE`.
    let types: [String: String]

    init(parsing text: String) throws {
        var samples: [Sample] = []
        var types: [String: String] = [:]
        for line in text.split(separator: "\n") {
            if line.hasPrefix("#") {
                let words = line.split(separator: " ")
                if words.count == 4 && words[1] == "TYPE" { types[String(words[2])] = String(words[3]) }
                continue
            }
            samples.append(try Self.sample(line))
        }
        self.samples = samples
        self.types = types
    }

    private static func sample(_ line: Substring) throws -> Sample {
        guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else {
            throw TestbedError("not a sample line: \(line)")
        }
        let series = line[..<space]
        guard let brace = series.firstIndex(of: "{") else {
            guard Self.isName(series) else { throw TestbedError("bad metric name: \(line)") }
            return Sample(name: String(series), labels: [:], value: value)
        }
        guard series.hasSuffix("}"), Self.isName(series[..<brace]) else { throw TestbedError("bad series: \(line)") }
        var labels: [String: String] = [:]
        var rest = series[series.index(after: brace)..<series.index(before: series.endIndex)]
        while !rest.isEmpty {
            guard let equals = rest.firstIndex(of: "="), rest[rest.index(after: equals)...].hasPrefix("\"") else {
                throw TestbedError("bad label in: \(line)")
            }
            let name = String(rest[..<equals])
            var index = rest.index(equals, offsetBy: 2)
            var value = ""
            while true {
                guard index < rest.endIndex else { throw TestbedError("unterminated label value: \(line)") }
                let character = rest[index]
                if character == "\"" { break }
                if character == "\\" {
                    index = rest.index(after: index)
                    guard index < rest.endIndex else { throw TestbedError("bad escape: \(line)") }
                    value.append(rest[index] == "n" ? "\n" : rest[index])
                } else {
                    value.append(character)
                }
                index = rest.index(after: index)
            }
            labels[name] = value
            rest = rest[rest.index(after: index)...]
            if rest.hasPrefix(",") { rest = rest.dropFirst() }
        }
        return Sample(name: String(series[..<brace]), labels: labels, value: value)
    }

    private static func isName(_ text: Substring) -> Bool {
        guard let first = text.first, first.isLetter || first == "_" || first == ":" else { return false }
        return text.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == ":") }
    }

    /// The value of the one sample named `name` whose labels include `labels`; nil when none.
    func value(_ name: String, _ labels: [String: String] = [:]) -> Double? {
        samples.first { sample in
            sample.name == name && labels.allSatisfy { sample.labels[$0.key] == $0.value }
        }?.value
    }

    /// The sum of every sample named `name` whose labels include `labels` (0 when none).
    func sum(_ name: String, _ labels: [String: String] = [:]) -> Double {
        samples.filter { sample in
            sample.name == name && labels.allSatisfy { sample.labels[$0.key] == $0.value }
        }.reduce(0) { $0 + $1.value }
    }
}

import Yams

/// A value read from the configuration together with where it came from: the YAML path it was
/// read at (`jwt[1].issuer.url`) or the flag that set it (`--oidc-client-id`). Problems found
/// in the value are reported at `origin`, so the user is sent to the right place to fix it.
struct Sourced<Value> {
    var value: Value
    var origin: String

    init(_ value: Value, at origin: String) {
        self.value = value
        self.origin = origin
    }

    /// Whether the value came from the command line rather than the file.
    var isFlag: Bool { origin.hasPrefix("-") }
}

extension Sourced: Sendable where Value: Sendable {}

/// A YAML node and its path, for a strict walk over a document: every mapping is checked
/// against the keys it may hold, and every type mismatch is reported with the path at fault.
struct YAMLField {
    let node: Node
    let path: String

    func child(_ key: String) -> String {
        path.isEmpty ? key : "\(path).\(key)"
    }

    /// `null` (or `~`, or an empty value) reads as absent, as Kubernetes' JSON decoding treats it.
    var isNull: Bool {
        guard case .scalar(let scalar) = node else { return false }
        return node.tag.description == Tag.Name.null.rawValue && scalar.style == .plain
    }

    /// The values of a mapping whose keys must all be in `allowed`; nil (with a problem) when the
    /// node is not a mapping. Unknown keys are reported, with a suggestion when one is close.
    func mapping(allowed: [String], problems: inout ProblemCollector) -> [String: YAMLField]? {
        guard case .mapping(let mapping) = node else {
            problems.add(path.isEmpty ? "(top level)" : path, "must be a mapping (key: value), not \(kindDescription)")
            return nil
        }
        var fields: [String: YAMLField] = [:]
        for (keyNode, value) in mapping {
            guard case .scalar(let keyScalar) = keyNode else {
                problems.add(path.isEmpty ? "(top level)" : path, "has a key that is not a string")
                continue
            }
            let key = keyScalar.string
            // An empty key (`: value`, or an anchor alone before the colon) has no path of its own.
            guard !key.isEmpty else {
                problems.add(path.isEmpty ? "(top level)" : path, "has an empty key")
                continue
            }
            guard allowed.contains(key) else {
                var message = "unknown field"
                if let suggestion = Self.closest(to: key, among: allowed) {
                    message += " (did you mean \"\(suggestion)\"?)"
                }
                problems.add(child(key), message)
                continue
            }
            let field = YAMLField(node: value, path: child(key))
            if !field.isNull { fields[key] = field }
        }
        return fields
    }

    /// A string scalar. Numbers and booleans are refused (quote them), as Kubernetes refuses them.
    func string(problems: inout ProblemCollector) -> Sourced<String>? {
        guard case .scalar(let scalar) = node else {
            problems.add(path, "must be a string, not \(kindDescription)")
            return nil
        }
        let tag = node.tag.description
        if tag != Tag.Name.str.rawValue && scalar.style == .plain {
            problems.add(path, "must be a string, not \(kindDescription) (put it in quotes: \"\(scalar.string)\")")
            return nil
        }
        return Sourced(scalar.string, at: path)
    }

    func bool(problems: inout ProblemCollector) -> Sourced<Bool>? {
        guard case .scalar(let scalar) = node, scalar.style == .plain, node.tag.description == Tag.Name.bool.rawValue,
            let value = node.bool
        else {
            problems.add(path, "must be true or false, not \(kindDescription)")
            return nil
        }
        return Sourced(value, at: path)
    }

    /// The elements of a sequence, each with its indexed path (`jwt[0]`).
    func sequence(problems: inout ProblemCollector) -> [YAMLField]? {
        guard case .sequence(let sequence) = node else {
            problems.add(path, "must be a list, not \(kindDescription)")
            return nil
        }
        return sequence.enumerated().map { YAMLField(node: $0.element, path: "\(path)[\($0.offset)]") }
    }

    func stringList(problems: inout ProblemCollector) -> Sourced<[String]>? {
        guard let elements = sequence(problems: &problems) else { return nil }
        var values: [String] = []
        var valid = true
        for element in elements {
            if let value = element.string(problems: &problems) {
                values.append(value.value)
            } else {
                valid = false
            }
        }
        return valid ? Sourced(values, at: path) : nil
    }

    /// How the node reads to a user: "a list", "a mapping", "the number 8080", ...
    var kindDescription: String {
        switch node {
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        case .alias: return "an alias"
        case .scalar(let scalar):
            switch node.tag.description {
            case Tag.Name.int.rawValue, Tag.Name.float.rawValue: return "the number \(scalar.string)"
            case Tag.Name.bool.rawValue: return "the boolean \(scalar.string)"
            case Tag.Name.null.rawValue: return "null"
            case Tag.Name.timestamp.rawValue: return "the timestamp \(scalar.string)"
            case Tag.Name.str.rawValue: return "the string \"\(scalar.string)\""
            default: return "the value \(scalar.string)"
            }
        }
    }

    /// The allowed key within edit distance 2 of `key` (case-insensitively), if there is one.
    static func closest(to key: String, among allowed: [String]) -> String? {
        let lowered = Array(key.lowercased())
        var best: (String, Int)?
        for candidate in allowed {
            let distance = editDistance(lowered, Array(candidate.lowercased()))
            if distance <= 2, distance < best?.1 ?? Int.max { best = (candidate, distance) }
        }
        return best?.0
    }

    private static func editDistance(_ a: [Character], _ b: [Character]) -> Int {
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var previous = Array(0...b.count)
        for i in 1...a.count {
            var current = [i] + Array(repeating: 0, count: b.count)
            for j in 1...b.count {
                current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            previous = current
        }
        return previous[b.count]
    }
}

extension YamlError {
    /// One line naming the place in the file: `line 3, column 7: mapping values are not allowed here`.
    var summary: String {
        switch self {
        case .scanner(let context, let problem, let mark, _), .parser(let context, let problem, let mark, _),
            .composer(let context, let problem, let mark, _):
            let during = context.map { " (\($0.text) at line \($0.mark.line), column \($0.mark.column))" } ?? ""
            return "line \(mark.line), column \(mark.column): \(problem)\(during)"
        case .duplicatedKeysInMapping(let duplicates, let context):
            let keys = duplicates.map { "\"\($0)\"" }.joined(separator: ", ")
            return "line \(context.mark.line), column \(context.mark.column): duplicate key \(keys) in one mapping"
        case .reader(let problem, let offset, _, _):
            return "\(problem)" + (offset.map { " at byte \($0)" } ?? "")
        default:
            return "\(self)".split(separator: "\n").first.map(String.init) ?? "\(self)"
        }
    }
}

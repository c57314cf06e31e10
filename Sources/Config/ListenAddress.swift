/// A TCP address to listen on, written as Go's `net.Listen` accepts it:
/// `:8080` (every interface), `127.0.0.1:8080`, `[::1]:8080` or `localhost:8080`.
public struct ListenAddress: Sendable, Hashable, CustomStringConvertible {
    /// The host to bind; empty means every interface.
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Parses `text`; `path` names the flag or YAML field in the error.
    public init(parsing text: String, path: String) throws(ConfigurationError) {
        let hint = "want HOST:PORT such as \":8080\", \"127.0.0.1:8080\" or \"[::1]:8080\""
        guard let colon = text.lastIndex(of: ":") else {
            throw ConfigurationError(path, "\"\(text)\" has no port; \(hint)")
        }
        var host = String(text[..<colon])
        let portText = text[text.index(after: colon)...]
        if host.hasPrefix("[") {
            guard host.hasSuffix("]"), host.count > 2 else {
                throw ConfigurationError(path, "\"\(text)\" has an unclosed IPv6 bracket; \(hint)")
            }
            host = String(host.dropFirst().dropLast())
        } else if host.contains(":") {
            throw ConfigurationError(path, "\"\(text)\": an IPv6 host must be in brackets; \(hint)")
        }
        guard let port = Int(portText), (0...65535).contains(port), portText.allSatisfy(\.isASCII) else {
            throw ConfigurationError(path, "\"\(text)\" has an invalid port \"\(portText)\"; \(hint)")
        }
        self.host = host
        self.port = port
    }

    public var description: String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }
}

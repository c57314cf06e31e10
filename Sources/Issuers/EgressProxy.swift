import AsyncHTTPClient
import FoundationEssentials
#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// The HTTP proxy the issuers' discovery documents and keys are fetched through, from
/// `HTTPS_PROXY` and `NO_PROXY` (or their lowercase forms), as kube-apiserver's OIDC
/// authenticator fetches them (Go's `http.ProxyFromEnvironment`). Clusters whose egress goes
/// through a proxy reach an external identity provider only this way.
///
/// Go's rules: `NO_PROXY` is a comma-separated list of `*` (nothing is proxied), IP addresses,
/// CIDR ranges, and host names (`example.com` also covers its subdomains, `.example.com` only
/// them), each optionally with `:port`. `localhost` and loopback addresses are never proxied.
struct EgressProxy: Sendable, Equatable {
    /// Where to send CONNECT: the proxy's host and port, and its basic credentials if the
    /// variable gave `user:password@`.
    struct Server: Sendable, Equatable {
        var host: String
        var port: Int
        var user: String?
        var password = ""
    }

    /// nil: no proxy. A variable that does not parse is kept as its error, reported on every
    /// fetch that would have used it (an issuer's `/readyz` check says why).
    var server: Result<Server, KeyFetchError>?
    var noProxy: [String] = []

    /// Read once from the process's environment.
    static let environment = EgressProxy(environment: ProcessInfo.processInfo.environment)

    init(server: Result<Server, KeyFetchError>?, noProxy: [String] = []) {
        self.server = server
        self.noProxy = noProxy
    }

    init(environment: [String: String]) {
        // The uppercase name first, as Go reads them.
        func variable(_ name: String) -> String? {
            [environment[name], environment[name.lowercased()]].lazy.compactMap { $0 }.first { !$0.isEmpty }
        }
        server = variable("HTTPS_PROXY").map(Self.parseServer)
        let list = variable("NO_PROXY")
        noProxy = (list ?? "").split(separator: ",").map { entry in
            String(entry.drop(while: \.isWhitespace).reversed().drop(while: \.isWhitespace).reversed()).lowercased()
        }.filter { !$0.isEmpty }
    }

    /// `http://[user:password@]host[:port]`, or `host[:port]` (Go reads a bare host as http).
    static func parseServer(_ value: String) -> Result<Server, KeyFetchError> {
        let text = value.contains("://") ? value : "http://" + value
        // The messages never repeat the value: it may hold the proxy's password.
        guard let components = URLComponents(string: text), let host = components.host, !host.isEmpty else {
            return .failure(KeyFetchError("HTTPS_PROXY is not a proxy URL such as http://proxy:3128"))
        }
        guard components.scheme?.lowercased() == "http" else {
            return .failure(
                KeyFetchError(
                    "HTTPS_PROXY: only an http:// proxy (CONNECT) is supported, not \(components.scheme ?? "")://"))
        }
        return .success(
            Server(
                host: unbracketed(host), port: components.port ?? 80, user: components.user,
                password: components.password ?? ""))
    }

    /// The proxy for a request to `url`, nil to go direct. Only `https://` URLs use it (Go
    /// would take `HTTP_PROXY` for `http://`, which the proxy does not read); a redirect keeps
    /// the choice made for the first URL.
    func server(for url: String) -> Result<Server, KeyFetchError>? {
        guard let server, let components = URLComponents(string: url), let rawHost = components.host,
            components.scheme?.lowercased() == "https"
        else {
            return nil
        }
        let host = Self.unbracketed(rawHost.lowercased())
        let port = components.port ?? 443
        if host == "localhost" || Self.isLoopback(host) { return nil }
        return noProxy.contains { Self.matches($0, host: host, port: port) } ? nil : server
    }

    /// Whether one `NO_PROXY` entry covers `host` (lowercase, no brackets) and `port`.
    static func matches(_ entry: String, host: String, port: Int) -> Bool {
        if entry == "*" { return true }
        if let (network, prefix) = cidr(entry) {
            guard let address = IPAddressBytes(host), address.bytes.count == network.bytes.count else { return false }
            return address.hasPrefix(network, bits: prefix)
        }
        if let address = IPAddressBytes(entry) {
            return IPAddressBytes(host) == address
        }
        var name = entry
        var entryPort: Int?
        if let colon = entry.lastIndex(of: ":"), let number = Int(entry[entry.index(after: colon)...]),
            !name[..<colon].contains(":") || name.hasPrefix("[")
        {
            name = String(entry[..<colon])
            entryPort = number
        }
        if let entryPort, entryPort != port { return false }
        // An IP address with a port: `10.1.2.3:443`, `[2001:db8::1]:443`.
        name = unbracketed(name)
        if let address = IPAddressBytes(name) {
            return IPAddressBytes(host) == address
        }
        if name.hasPrefix("*.") { name = String(name.dropFirst()) }
        if name.hasPrefix(".") { return host.hasSuffix(name) }
        return host == name || host.hasSuffix("." + name)
    }

    /// An IPv6 address without the brackets a URL or a `host:port` puts around it.
    private static func unbracketed(_ host: String) -> String {
        host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
    }

    private static func cidr(_ entry: String) -> (IPAddressBytes, Int)? {
        let parts = entry.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let address = IPAddressBytes(String(parts[0])), let bits = Int(parts[1]),
            (0...address.bytes.count * 8).contains(bits)
        else { return nil }
        return (address, bits)
    }

    private static func isLoopback(_ host: String) -> Bool {
        guard let address = IPAddressBytes(host) else { return false }
        if address.bytes.count == 4 { return address.bytes[0] == 127 }
        return address.bytes == Array(repeating: 0, count: 15) + [1]
    }
}

/// An IPv4 or IPv6 address as its bytes, for `NO_PROXY` matching, parsed by the system's
/// `inet_pton`, as strictly as Go's `ParseIP` (no leading zeros, `::ffff:1.2.3.4` accepted).
struct IPAddressBytes: Equatable {
    var bytes: [UInt8]

    init?(_ text: String) {
        var v4 = in_addr()
        var v6 = in6_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            bytes = withUnsafeBytes(of: v4) { Array($0) }
        } else if inet_pton(AF_INET6, text, &v6) == 1 {
            bytes = withUnsafeBytes(of: v6) { Array($0) }
        } else {
            return nil
        }
    }

    func hasPrefix(_ network: IPAddressBytes, bits: Int) -> Bool {
        for bit in 0..<bits {
            let mask = UInt8(0x80) >> UInt8(bit % 8)
            if bytes[bit / 8] & mask != network.bytes[bit / 8] & mask { return false }
        }
        return true
    }
}

import NIOHPACK
import NIOHTTP1

/// Translation between an HTTP/2 stream's header blocks and the HTTP/1-style heads its
/// `ProxyHandler` works with, and the checks a request's block must pass on the way.
extension HTTP2StreamsHandler {
    /// An HTTP/1-style request head from a request's header block, or nil when the block breaks
    /// one of RFC 9113's rules (`HTTP2FieldRules`; `NIOHTTP2Handler`'s own header-block check
    /// is off) or a pseudo-header could not be written into an HTTP/1.1 request line unchanged.
    /// The rules are NIO's: pseudo-headers first, each once, only `:method`, `:scheme`, `:path`
    /// and `:authority` (no extended CONNECT: it is not offered); `:method`, `:scheme` and a
    /// non-empty `:path` required, or for CONNECT `:authority` alone; lower-case token names;
    /// no NUL, CR or LF in a value, no connection-specific field, `te` only as `trailers`.
    static func requestHead(_ block: HPACKHeaders, endStream: Bool) -> HTTPRequestHead? {
        var method: String?
        var scheme: String?
        var path: String?
        var authority: String?
        var regularFields = false
        var hasHost = false
        var contentLength: Int?
        for (name, value, _) in block {
            if name.utf8.first == UInt8(ascii: ":") {
                guard !regularFields, HTTP2FieldRules.isPseudoHeaderValue(value) else { return nil }
                switch name {
                case ":method" where method == nil: method = value
                case ":scheme" where scheme == nil: scheme = value
                case ":path" where path == nil: path = value
                case ":authority" where authority == nil: authority = value
                default: return nil  // repeated, a response's `:status`, `:protocol`, or unknown
                }
                continue
            }
            regularFields = true
            guard HTTP2FieldRules.isFieldName(name), HTTP2FieldRules.isFieldValue(value) else { return nil }
            switch HTTP2FieldRules.kind(of: name) {
            case .connectionSpecific:
                return nil
            case .te:
                guard value == "trailers" else { return nil }
            case .host:
                hasHost = true
            case .contentLength:
                // NIO checks the body against it, but takes `+5` and `5, 5` too: the API server
                // gets the plain number.
                guard let length = Self.contentLength(value), contentLength == nil || contentLength == length
                else { return nil }
                contentLength = length
            case .other:
                break
            }
        }
        guard let method, isToken(method) else { return nil }
        let httpMethod = HTTPMethod(rawValue: method)
        let uri: String
        if method == "CONNECT" {
            // CONNECT names only an authority (and is refused: nothing tunnels over a stream).
            guard let authority, scheme == nil, path == nil else { return nil }
            uri = authority
        } else {
            // Its bytes passed `isPseudoHeaderValue`: nothing that could end the request line
            // early or smuggle a second request into the connection to the API server.
            guard scheme != nil, let path,
                path.utf8.first == UInt8(ascii: "/") || (path == "*" && httpMethod == .OPTIONS)
            else { return nil }
            uri = path
        }
        var fields: [(String, String)] = []
        fields.reserveCapacity(block.count)
        if !hasHost, let authority {
            guard !authority.isEmpty else { return nil }
            fields.append(("host", authority))
        }
        if let contentLength {
            fields.append(("content-length", String(contentLength)))
        } else if !endStream {
            // A body follows, of a length not given: the API server reads an HTTP/1.1 body by
            // its framing, so it goes chunked, whatever the method (NIO's encoder leaves an
            // unframed GET, HEAD or DELETE body raw, to be read as the next request).
            fields.append(("transfer-encoding", "chunked"))
        }
        for (name, value, _) in block where name.utf8.first != UInt8(ascii: ":") && name != "content-length" {
            fields.append((name, value))
        }
        return HTTPRequestHead(version: .http2, method: httpMethod, uri: uri, headers: HTTPHeaders(fields))
    }

    /// Whether a trailer block keeps RFC 9113's rules: no pseudo-header, and the fields' rules
    /// (`requestHead`'s, but for `te`, which NIO checks in a request's block only).
    static func isValidTrailers(_ block: HPACKHeaders) -> Bool {
        block.allSatisfy { name, value, _ in
            name.utf8.first != UInt8(ascii: ":") && HTTP2FieldRules.isFieldName(name)
                && HTTP2FieldRules.isFieldValue(value) && HTTP2FieldRules.kind(of: name) != .connectionSpecific
        }
    }

    /// An HTTP/2 response header block: `:status`, then the fields with lower-case names and
    /// without HTTP/1.1's connection-specific ones, which HTTP/2 forbids. A status that has no
    /// body (1xx, 204, 304) loses its content-length, as NIO's HTTP/1.1 encoder drops it: NIO's
    /// HTTP/2 handler would hold a 204's stream to the length given and refuse to end it short.
    static func responseHeaders(_ head: HTTPResponseHead) -> HPACKHeaders {
        var fields: [(String, String)] = [(":status", String(head.status.code))]
        fields.reserveCapacity(head.headers.count + 1)
        let connectionTokens = head.headers[canonicalForm: "connection"]
        let bodiless = !head.status.mayHaveResponseBody
        for (name, value) in head.headers {
            let lowered = name.lowercased()
            switch HTTP2FieldRules.kind(of: lowered) {
            case .connectionSpecific:
                continue
            case .contentLength where bodiless:
                continue
            default:
                if !connectionTokens.isEmpty, connectionTokens.contains(where: { $0.lowercased() == lowered }) {
                    continue
                }
                fields.append((lowered, value))
            }
        }
        return HPACKHeaders(fields)
    }

    /// A content-length value as NIO accepts it (a list of one repeated number, perhaps signed),
    /// or nil when it is anything else.
    private static func contentLength(_ value: String) -> Int? {
        var length: Int?
        for item in value.split(separator: ",") {
            var digits = item
            while let first = digits.first, first == " " || first == "\t" { digits.removeFirst() }
            while let last = digits.last, last == " " || last == "\t" { digits.removeLast() }
            if digits.first == "+" { digits.removeFirst() }
            guard !digits.isEmpty, digits.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
                let number = Int(digits), length == nil || length == number
            else { return nil }
            length = number
        }
        return length
    }

    /// RFC 9110 token characters: a method that cannot break the request line.
    private static func isToken(_ value: String) -> Bool {
        !value.isEmpty
            && value.utf8.allSatisfy { byte in
                switch byte {
                case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                    UInt8(ascii: "0")...UInt8(ascii: "9"):
                    true
                default:
                    "!#$%&'*+-.^_`|~".utf8.contains(byte)
                }
            }
    }
}

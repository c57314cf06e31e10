import NIOHTTP1

/// The bearer token of an `Authorization` header, read as kube-apiserver's bearer-token
/// authenticator reads it: white space trimmed, split on single spaces, scheme `Bearer` in any
/// case, the second field is the token. Stricter in one way: several `Authorization` headers
/// are refused rather than the first one used, so no two parties can read different tokens.
enum BearerToken {
    enum Extraction: Equatable {
        case token(String)
        /// No usable token: absent, several headers, another scheme, or empty.
        case missing
    }

    static func extract(from headers: HTTPHeaders) -> Extraction {
        var values = headers[canonicalForm: "authorization"].makeIterator()
        guard let value = values.next(), values.next() == nil else { return .missing }
        var trimmed = value[...]
        while let first = trimmed.first, first.isWhitespace { trimmed = trimmed.dropFirst() }
        while let last = trimmed.last, last.isWhitespace { trimmed = trimmed.dropLast() }
        let fields = trimmed.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: false)
        guard fields.count >= 2, fields[0].lowercased() == "bearer", !fields[1].isEmpty else { return .missing }
        return .token(String(fields[1]))
    }
}

/// OIDC distributed claims (`_claim_names`, `_claim_sources`; OpenID Connect Core §5.6.2).
///
/// The proxy does not fetch distributed claims. It checks their shape as go-oidc does (so a
/// token kube-apiserver refuses is refused here too), and it refuses a token whose groups
/// would come from a distributed source, where kube-apiserver would fetch them: accepting it
/// with no groups would impersonate a different identity than the API server would see.
enum DistributedClaims {
    /// go-oidc decodes `_claim_names` as `map[string]string` and `_claim_sources` as a map of
    /// `{endpoint, access_token}` strings; every name must point at an existing source.
    static func checkShape(_ claims: [String: JSONValue]) throws(TokenRejection) {
        let names = try claimNames(claims)
        let sources = try claimSources(claims)
        for (_, source) in names {
            guard !source.isEmpty else { throw .invalidClaim("_claim_names has an empty source") }
            guard sources[source] != nil else { throw .invalidClaim("_claim_names names a source that does not exist") }
        }
    }

    /// Throws when `claim` (absent from the token) is named in `_claim_names` with an endpoint:
    /// kube-apiserver would fetch it; an aggregated source (no endpoint) yields nothing there too.
    static func refuseDistributed(_ claim: String, in claims: [String: JSONValue]) throws(TokenRejection) {
        guard claims["_claim_names"] != nil else { return }
        guard claims["_claim_sources"] != nil else {
            throw .invalidClaim("_claim_names without _claim_sources")
        }
        guard let source = try claimNames(claims)[claim] else { return }
        if let endpoint = try claimSources(claims)[source], !endpoint.isEmpty {
            throw .invalidClaim("claim \(claim) is distributed, which is not supported")
        }
    }

    private static func claimNames(_ claims: [String: JSONValue]) throws(TokenRejection) -> [String: String] {
        switch claims["_claim_names"] {
        case nil, .null:
            return [:]
        case .object(let object):
            var names: [String: String] = [:]
            for (name, value) in object {
                guard let source = value.goString else { throw .invalidClaim("_claim_names is not a map of strings") }
                names[name] = source
            }
            return names
        default:
            throw .invalidClaim("_claim_names is not a map of strings")
        }
    }

    /// Each source's endpoint ("" when it has none).
    private static func claimSources(_ claims: [String: JSONValue]) throws(TokenRejection) -> [String: String] {
        switch claims["_claim_sources"] {
        case nil, .null:
            return [:]
        case .object(let object):
            var sources: [String: String] = [:]
            for (name, value) in object {
                switch value {
                case .null:
                    sources[name] = ""
                case .object(let source):
                    for field in ["endpoint", "access_token"] {
                        if let fieldValue = source[field], fieldValue.goString == nil {
                            throw .invalidClaim("_claim_sources.\(field) is not a string")
                        }
                    }
                    sources[name] = source["endpoint"]?.goString ?? ""
                default:
                    throw .invalidClaim("_claim_sources is not a map of objects")
                }
            }
            return sources
        default:
            throw .invalidClaim("_claim_sources is not a map of objects")
        }
    }
}

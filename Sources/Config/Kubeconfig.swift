import FoundationEssentials
import Yams

/// The parts of a kubeconfig file that name an API server and a credential.
/// Unknown fields are ignored, as kubectl ignores them.
struct Kubeconfig: Decodable {
    struct NamedCluster: Decodable {
        var name: String
        var cluster: Cluster
    }
    struct Cluster: Decodable {
        var server: String?
        var certificateAuthority: String?
        var certificateAuthorityData: String?
        var insecureSkipTLSVerify: Bool?
        var tlsServerName: String?
        var proxyURL: String?

        enum CodingKeys: String, CodingKey {
            case server
            case certificateAuthority = "certificate-authority"
            case certificateAuthorityData = "certificate-authority-data"
            case insecureSkipTLSVerify = "insecure-skip-tls-verify"
            case tlsServerName = "tls-server-name"
            case proxyURL = "proxy-url"
        }
    }
    struct NamedUser: Decodable {
        var name: String
        var user: User
    }
    struct User: Decodable {
        var token: String?
        var tokenFile: String?
        var clientCertificate: String?
        var clientCertificateData: String?
        var clientKey: String?
        var clientKeyData: String?
        var exec: Ignored?
        var authProvider: Ignored?
        var username: String?

        enum CodingKeys: String, CodingKey {
            case token, tokenFile, exec, username
            case clientCertificate = "client-certificate"
            case clientCertificateData = "client-certificate-data"
            case clientKey = "client-key"
            case clientKeyData = "client-key-data"
            case authProvider = "auth-provider"
        }
    }
    struct NamedContext: Decodable {
        var name: String
        var context: Context
    }
    struct Context: Decodable {
        var cluster: String
        var user: String?
    }
    /// A value whose presence matters but whose content does not.
    struct Ignored: Decodable {
        init(from decoder: any Decoder) throws {}
    }

    var clusters: [NamedCluster]?
    var users: [NamedUser]?
    var contexts: [NamedContext]?
    var currentContext: String?

    enum CodingKeys: String, CodingKey {
        case clusters, users, contexts
        case currentContext = "current-context"
    }
}

extension UpstreamConfiguration {
    /// The API server of a kubeconfig's current context. Relative file paths are resolved
    /// against the kubeconfig's directory, as kubectl does.
    public static func fromKubeconfig(file: String) throws(ConfigurationError) -> UpstreamConfiguration {
        let text = try readTextFile(file, path: "--kubeconfig")
        return try fromKubeconfig(text: text, file: file)
    }

    /// The same for a kubeconfig's `text`, as read from `file` (whose directory relative paths
    /// resolve against). Public for the kubeconfig fuzz target (`Fuzz/`).
    public static func fromKubeconfig(text: String, file: String) throws(ConfigurationError) -> UpstreamConfiguration {
        let config: Kubeconfig
        do {
            config = try YAMLDecoder().decode(Kubeconfig.self, from: text)
        } catch {
            throw ConfigurationError(file, "not a valid kubeconfig: \(describeDecodingError(error))")
        }
        guard let contextName = config.currentContext, !contextName.isEmpty else {
            throw ConfigurationError(file, "current-context is not set; run `kubectl config use-context NAME`")
        }
        guard let context = config.contexts?.first(where: { $0.name == contextName })?.context else {
            throw ConfigurationError(file, "current-context \"\(contextName)\" is not among its contexts")
        }
        guard let cluster = config.clusters?.first(where: { $0.name == context.cluster })?.cluster else {
            throw ConfigurationError(
                file, "context \"\(contextName)\" names cluster \"\(context.cluster)\", which is not defined")
        }
        let directory = file.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
        func resolve(_ path: String) -> String {
            path.hasPrefix("/") || directory.isEmpty ? path : directory + "/" + path
        }

        guard let server = cluster.server, !server.isEmpty else {
            throw ConfigurationError(file, "cluster \"\(context.cluster)\" has no server")
        }
        let (host, port) = try parseHTTPSServer(server, path: "\(file): clusters[\(context.cluster)].server")
        if let proxyURL = cluster.proxyURL, !proxyURL.isEmpty {
            throw ConfigurationError(
                "\(file): clusters[\(context.cluster)].proxy-url",
                "is not supported: the proxy connects to the API server directly; give it a kubeconfig without proxy-url"
            )
        }

        var caPEM: String?
        if let data = cluster.certificateAuthorityData {
            caPEM = try decodeBase64PEM(data, path: "\(file): clusters[\(context.cluster)].certificate-authority-data")
        } else if let caFile = cluster.certificateAuthority {
            caPEM = try readTextFile(
                resolve(caFile), path: "\(file): clusters[\(context.cluster)].certificate-authority")
        }

        var credential = UpstreamCredential.none
        if let userName = context.user, !userName.isEmpty {
            guard let user = config.users?.first(where: { $0.name == userName })?.user else {
                throw ConfigurationError(
                    file, "context \"\(contextName)\" names user \"\(userName)\", which is not defined")
            }
            let userPath = "\(file): users[\(userName)]"
            if user.exec != nil {
                throw ConfigurationError(
                    userPath + ".exec",
                    "exec credential plugins are not supported; give the proxy a token, tokenFile or client certificate"
                )
            }
            if user.authProvider != nil {
                throw ConfigurationError(
                    userPath + ".auth-provider",
                    "auth-provider plugins are not supported; give the proxy a token, tokenFile or client certificate")
            }
            if let token = user.token, !token.isEmpty {
                credential = .bearerToken(token)
            } else if let tokenFile = user.tokenFile, !tokenFile.isEmpty {
                credential = .bearerTokenFile(path: resolve(tokenFile))
            } else if user.clientCertificate != nil || user.clientCertificateData != nil {
                let certificatePEM: String
                var certificateFile: String?
                if let data = user.clientCertificateData {
                    certificatePEM = try decodeBase64PEM(data, path: userPath + ".client-certificate-data")
                } else {
                    let file = resolve(user.clientCertificate ?? "")
                    certificatePEM = try readTextFile(file, path: userPath + ".client-certificate")
                    certificateFile = file
                }
                let keyPEM: String
                var keyFile: String?
                if let data = user.clientKeyData {
                    keyPEM = try decodeBase64PEM(data, path: userPath + ".client-key-data")
                } else if let file = user.clientKey.map(resolve) {
                    keyPEM = try readTextFile(file, path: userPath + ".client-key")
                    keyFile = file
                } else {
                    throw ConfigurationError(userPath, "a client certificate needs client-key or client-key-data")
                }
                credential = .clientCertificate(
                    certificatePEM: certificatePEM, privateKeyPEM: keyPEM, certificateFile: certificateFile,
                    keyFile: keyFile)
            } else if user.username != nil {
                throw ConfigurationError(userPath + ".username", "basic authentication is not supported")
            }
        }
        return UpstreamConfiguration(
            host: host, port: port, certificateAuthorityPEM: caPEM,
            insecureSkipTLSVerify: cluster.insecureSkipTLSVerify ?? false,
            tlsServerName: cluster.tlsServerName, credential: credential, source: file)
    }
}

/// Splits `https://host[:port][/]` into host and port (default 443). A path (Rancher's
/// `https://rancher/k8s/clusters/c-1`), a query or a user is refused: the proxy sends every
/// request to the server's root with the client's own path, so any of them would be dropped.
func parseHTTPSServer(_ server: String, path: String) throws(ConfigurationError) -> (String, Int) {
    guard let components = URLComponents(string: server), components.scheme?.lowercased() == "https",
        let host = components.host, !host.isEmpty
    else {
        throw ConfigurationError(path, "\"\(server)\" is not an https:// URL with a host")
    }
    guard components.path.isEmpty || components.path == "/", components.query == nil, components.user == nil
    else {
        throw ConfigurationError(path, "\"\(server)\": give only https://host[:port], without a path, query or user")
    }
    let bareHost = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
    return (bareHost, components.port ?? 443)
}

private func decodeBase64PEM(_ base64: String, path: String) throws(ConfigurationError) -> String {
    let compact = base64.filter { !$0.isWhitespace }
    guard let data = Data(base64Encoded: compact), let text = String(data: data, encoding: .utf8) else {
        throw ConfigurationError(path, "not base64-encoded PEM")
    }
    return text
}

/// A short description of a decoding error that names the field at fault.
func describeDecodingError(_ error: any Error) -> String {
    func pathString(_ codingPath: [any CodingKey]) -> String {
        var result = ""
        for key in codingPath {
            if let index = key.intValue {
                result += "[\(index)]"
            } else {
                result += result.isEmpty ? key.stringValue : "." + key.stringValue
            }
        }
        return result.isEmpty ? "(top level)" : result
    }
    switch error {
    case DecodingError.keyNotFound(let key, let context):
        return "\(pathString(context.codingPath + [key])): required field is missing"
    case DecodingError.typeMismatch(_, let context), DecodingError.valueNotFound(_, let context),
        DecodingError.dataCorrupted(let context):
        return "\(pathString(context.codingPath)): \(context.debugDescription)"
    default:
        return "\(error)"
    }
}

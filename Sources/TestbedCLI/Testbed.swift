import ArgumentParser
import AsyncHTTPClient
import FoundationEssentials
import NIOCore
import NIOHTTP1
import NIOSSL
import Testbed

#if canImport(Glibc)
    import Glibc
#endif

/// The stand-ins the tests use, as a program: for the README's demo and for trying the proxy by hand.
@main
struct TestbedCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kip-testbed",
        abstract: "Stand-in OIDC issuer and Kubernetes API server for trying kube-impersonate-proxy locally.",
        subcommands: [Serve.self, Request.self])
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Start a stand-in issuer and API server on loopback and write what a proxy needs into a folder.",
        discussion: """
            Writes into --dir: issuer-url, issuer-ca.crt (the issuer's CA), kubeconfig (the API server, for \
            the proxy's --kubeconfig), token (a user token valid for an hour), proxy.crt and proxy.key (a \
            serving certificate for the proxy, for localhost and 127.0.0.1) with proxy-ca.crt (its CA), and \
            ready (last). Prints every request the API server receives, then runs until interrupted.
            """)

    @Option(help: "Folder to write the files into (created if missing).")
    var dir: String

    @Option(help: "Email claim of the minted user token.")
    var email = "alice@example.com"

    @Option(help: "Groups claim of the minted user token (comma-separated).")
    var groups = "developers,oncall"

    @Flag(help: "Offer HTTP/2 by ALPN on the API server, as kube-apiserver does.")
    var http2 = false

    func run() async throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let issuer = try await StandInIssuer()
        let api = try await StandInAPIServer(http2: http2)
        let token = try issuer.mint(issuer.claims(email: email, groups: groups.split(separator: ",").map(String.init)))
        let kubeconfig = """
            apiVersion: v1
            kind: Config
            clusters:
            - name: stand-in
              cluster:
                server: \(api.url)
                certificate-authority-data: \(Data(api.certificateAuthority.certificatePEM.utf8).base64EncodedString())
            users:
            - name: proxy
              user:
                token: \(api.expectedToken)
            contexts:
            - name: stand-in
              context: {cluster: stand-in, user: proxy}
            current-context: stand-in

            """
        try write("issuer-url", issuer.url + "\n")
        try write("issuer-ca.crt", issuer.certificateAuthority.certificatePEM)
        try write("kubeconfig", kubeconfig)
        try write("token", token + "\n")
        let proxyAuthority = try TestCertificateAuthority(commonName: "kube-impersonate-proxy demo CA")
        let proxyIdentity = try proxyAuthority.issueServerCertificate()
        try write("proxy-ca.crt", proxyAuthority.certificatePEM)
        try write("proxy.crt", proxyIdentity.certificatePEM)
        try write("proxy.key", proxyIdentity.privateKeyPEM)
        try write("ready", "")
        say("stand-in issuer:     \(issuer.url)")
        say("stand-in API server: \(api.url)")
        var shown = 0
        while true {
            try await Task.sleep(for: .milliseconds(100))
            let requests = api.requests
            while shown < requests.count {
                let request = requests[shown]
                shown += 1
                var lines = ["API server received: \(request.method) \(request.uri)"]
                for (name, value) in request.headers {
                    let shownValue = name.lowercased() == "authorization" ? "Bearer <the proxy's own token>" : value
                    lines.append("    \(name): \(shownValue)")
                }
                say(lines.joined(separator: "\n"))
            }
        }
    }

    private func write(_ name: String, _ contents: String) throws {
        guard FileManager.default.createFile(atPath: dir + "/" + name, contents: Data(contents.utf8)) else {
            throw TestbedError("cannot write \(dir)/\(name)")
        }
    }
}

struct Request: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Send one GET with a bearer token and print the answer (a tiny curl).")

    @Argument(help: "The URL to GET.")
    var url: String

    @Option(name: .customLong("token-file"), help: "File holding the bearer token.")
    var tokenFile: String?

    @Option(name: .customLong("ca-file"), help: "CA bundle to trust for https:// URLs.")
    var caFile: String?

    func run() async throws {
        var tls = TLSConfiguration.makeClientConfiguration()
        if let caFile { tls.trustRoots = .file(caFile) }
        let client = HTTPClient(
            eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: .init(tlsConfiguration: tls))
        do {
            var request = HTTPClientRequest(url: url)
            if let tokenFile, let data = FileManager.default.contents(atPath: tokenFile) {
                let token = String(decoding: data, as: UTF8.self).filter { !$0.isWhitespace }
                request.headers.add(name: "Authorization", value: "Bearer \(token)")
            }
            let response = try await client.execute(request, timeout: .seconds(30))
            var text = "HTTP \(response.status.code) \(response.status.reasonPhrase)\n"
            for header in response.headers { text += "\(header.name): \(header.value)\n" }
            let body = try await response.body.collect(upTo: 16 << 20)
            text += "\n" + String(buffer: body) + "\n"
            say(text)
            try await client.shutdown()
            if response.status.code >= 400 { throw ExitCode(1) }
        } catch {
            try? await client.shutdown()
            throw error
        }
    }
}

/// Prints a line and flushes at once, so interleaved output of background processes stays readable.
func say(_ text: String) {
    print(text)
    fflush(nil)
}

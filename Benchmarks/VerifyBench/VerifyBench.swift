import Config
import FoundationEssentials
import Issuers
import Logging
import Testbed

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Measures the token paths every proxied request takes, through `IssuerSet` as the gateway
/// calls it, with keys fetched from a real (loopback HTTPS) stand-in issuer.
///
/// Prints microseconds per operation: the median of `rounds` rounds, each timing `iterations`
/// calls, in this thread's CPU time (so other processes on a busy machine do not inflate it)
/// and in wall-clock time. Build and run it in release mode with `scripts/bench-verify`.
@main
struct VerifyBench {
    static let rounds = 9

    static func main() async throws {
        let rsa = try TestSigningKey.rsa(kid: "rsa")
        let ec = TestSigningKey.p256(kid: "ec")
        let idp = try await StandInIssuer(keys: [rsa, ec])
        let issuer = IssuerConfiguration(
            url: idp.url, audiences: ["kubernetes"], certificateAuthorityPEM: idp.certificateAuthority.certificatePEM)
        var logger = Logger(label: "verify-bench")
        logger.logLevel = .critical

        let uncached = try IssuerSet(
            configuration: ProxyConfiguration(issuers: [issuer], tokenCacheTTL: .zero), logger: logger)
        let cached = try IssuerSet(
            configuration: ProxyConfiguration(issuers: [issuer], tokenCacheTTL: .seconds(600)), logger: logger)
        // Each set's key sources start fetching on creation.
        let deadline = ContinuousClock.now + .seconds(30)
        while !(uncached.issuers[0].status.isReady && cached.issuers[0].status.isReady) {
            guard ContinuousClock.now < deadline else { throw TestbedError("the issuer's keys never loaded") }
            try await Task.sleep(for: .milliseconds(20))
        }

        let claims = idp.claims(lifetime: 3 * 3600)
        let rs256 = try idp.mint(claims, key: rsa)
        let ps256 = try idp.mint(claims, key: rsa, header: ["alg": "PS256", "kid": "rsa", "typ": "JWT"])
        let es256 = try idp.mint(claims, key: ec)
        let unknown = try idp.mint(claims.setting("iss", "https://unknown.example.com"), key: rsa)

        for (name, token) in [("RS256", rs256), ("PS256", ps256), ("ES256", es256)] {
            guard case .authenticated = uncached.authenticate(token: token) else {
                throw TestbedError("the \(name) token does not verify")
            }
        }
        guard case .authenticated = cached.authenticate(token: rs256) else {
            throw TestbedError("the token to cache does not verify")
        }
        guard case .rejected(.unknownIssuer, _) = uncached.authenticate(token: unknown) else {
            throw TestbedError("the unknown-issuer token is not refused as such")
        }

        // The floors: the signature checks alone, through swift-crypto, on the same bytes.
        let rs256Input = Array(rs256.split(separator: ".").prefix(2).joined(separator: ".").utf8)
        let rs256Signature = try rsa.sign(rs256Input, algorithm: "RS256")
        let es256Input = Array(es256.split(separator: ".").prefix(2).joined(separator: ".").utf8)
        let es256Signature = try ec.sign(es256Input, algorithm: "ES256")
        let rsaCheck = try rsa.signatureCheck(algorithm: "RS256")
        let ecCheck = try ec.signatureCheck(algorithm: "ES256")
        guard rsaCheck(rs256Signature, rs256Input), ecCheck(es256Signature, es256Input)
        else {
            throw TestbedError("a signature does not verify alone")
        }

        let cases: [(name: String, label: String, iterations: Int, run: () -> Bool)] = [
            ("rs256", "RS256 full verification", 2_000, { uncached.authenticate(token: rs256).isAuthenticated }),
            (
                "rs256-alone", "  of which the RSA check (floor)", 2_000,
                { rsaCheck(rs256Signature, rs256Input) }
            ),
            ("ps256", "PS256 full verification", 2_000, { uncached.authenticate(token: ps256).isAuthenticated }),
            ("es256", "ES256 full verification", 2_000, { uncached.authenticate(token: es256).isAuthenticated }),
            (
                "es256-alone", "  of which the ECDSA check (floor)", 2_000,
                { ecCheck(es256Signature, es256Input) }
            ),
            ("cache-hit", "cache hit (RS256 token)", 200_000, { cached.authenticate(token: rs256).isAuthenticated }),
            (
                "unknown-issuer", "unknown issuer rejection", 200_000,
                { uncached.authenticate(token: unknown).isAuthenticated }
            ),
            (
                "unknown-issuer-cached", "unknown issuer rejection, cache on", 200_000,
                { cached.authenticate(token: unknown).isAuthenticated }
            ),
        ]
        // `--profile NAME [ITERATIONS]` runs one case alone, for `valgrind --tool=callgrind`.
        let arguments = CommandLine.arguments
        if let flag = arguments.firstIndex(of: "--profile"), flag + 1 < arguments.count {
            guard let selected = cases.first(where: { $0.name == arguments[flag + 1] }) else {
                throw TestbedError("no case \(arguments[flag + 1]); cases: \(cases.map(\.name))")
            }
            let iterations = flag + 2 < arguments.count ? Int(arguments[flag + 2]) ?? 1_000 : 1_000
            var authenticated = 0
            for _ in 0..<iterations {
                if selected.run() { authenticated += 1 }
            }
            print("\(selected.name): \(iterations) calls, \(authenticated) authenticated")
        } else {
            print("verify-bench: microseconds per operation, median of \(rounds) rounds")
            for entry in cases { report(entry.label, measure(iterations: entry.iterations, entry.run)) }
        }

        await uncached.shutdown()
        await cached.shutdown()
        await idp.stop()
    }

    /// The medians over `rounds` rounds of the time per call of `operation`, in microseconds:
    /// this thread's CPU time and wall-clock time.
    static func measure(iterations: Int, _ operation: () -> Bool) -> (cpu: Double, wall: Double) {
        var authenticated = 0
        var cpuSamples: [Double] = []
        var wallSamples: [Double] = []
        for _ in 0..<rounds {
            let cpuStart = threadCPUMicroseconds()
            let wallStart = ContinuousClock.now
            for _ in 0..<iterations {
                if operation() { authenticated &+= 1 }
            }
            let (seconds, attoseconds) = (ContinuousClock.now - wallStart).components
            wallSamples.append((Double(seconds) * 1e6 + Double(attoseconds) * 1e-12) / Double(iterations))
            cpuSamples.append((threadCPUMicroseconds() - cpuStart) / Double(iterations))
        }
        // Keeps the results observable so the calls cannot be optimised away.
        if authenticated == -1 { print("unreachable") }
        return (cpuSamples.sorted()[rounds / 2], wallSamples.sorted()[rounds / 2])
    }

    static func threadCPUMicroseconds() -> Double {
        var time = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &time)
        return Double(time.tv_sec) * 1e6 + Double(time.tv_nsec) / 1e3
    }

    static func report(_ name: String, _ microseconds: (cpu: Double, wall: Double)) {
        func format(_ value: Double) -> String {
            let text = String((value * 100).rounded() / 100)
            return String(repeating: " ", count: max(0, 8 - text.count)) + text
        }
        let padding = String(repeating: " ", count: max(0, 36 - name.count))
        print("  \(name)\(padding) \(format(microseconds.cpu)) µs/op CPU  \(format(microseconds.wall)) µs/op wall")
    }
}

extension IssuerSet.Attempt {
    fileprivate var isAuthenticated: Bool {
        if case .authenticated = self { return true }
        return false
    }
}

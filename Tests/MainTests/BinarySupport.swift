import Foundation
import Testbed

/// Runs the built `kube-impersonate-proxy` binary as a user would.
enum ProxyBinary {
    static var url: URL {
        let candidates = [
            URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent(),
            Bundle.main.bundleURL,
            Bundle.main.bundleURL.deletingLastPathComponent(),
        ]
        for directory in candidates {
            let binary = directory.appendingPathComponent("kube-impersonate-proxy")
            if FileManager.default.isExecutableFile(atPath: binary.path) { return binary }
        }
        return candidates[0].appendingPathComponent("kube-impersonate-proxy")
    }

    /// The environment every run starts from: a fixed PATH and nothing else of the test's, but
    /// the sanitizer options `scripts/sanitize` gives for the binary (`KIP_CHILD_ASAN_OPTIONS`,
    /// `KIP_CHILD_TSAN_OPTIONS`): leak checking and a report file per process, which the script
    /// collects, so a report from the binary fails the run even where the test would pass.
    static var baseEnvironment: [String: String] {
        var environment = ["PATH": "/usr/bin:/bin"]
        let inherited = ProcessInfo.processInfo.environment
        for (given, name) in [("KIP_CHILD_ASAN_OPTIONS", "ASAN_OPTIONS"), ("KIP_CHILD_TSAN_OPTIONS", "TSAN_OPTIONS")] {
            if let options = inherited[given] { environment[name] = options }
        }
        return environment
    }

    /// Whether the binary runs under a sanitizer, whose shadow memory and quarantine make its
    /// resident size say nothing about the proxy's own.
    static var isSanitized: Bool {
        let inherited = ProcessInfo.processInfo.environment
        return inherited["KIP_CHILD_ASAN_OPTIONS"] != nil || inherited["KIP_CHILD_TSAN_OPTIONS"] != nil
    }

    struct Outcome {
        var status: Int32
        var standardOutput: String
        var standardError: String
    }

    /// Runs the binary to completion with `arguments` and a clean environment.
    static func run(_ arguments: [String], environment: [String: String] = [:]) throws -> Outcome {
        let process = Process()
        process.executableURL = url
        process.arguments = arguments
        process.environment = environment.merging(baseEnvironment) { first, _ in first }
        let output = Pipe()
        let error = Pipe()
        process.standardOutput = output
        process.standardError = error
        try process.run()
        let outputData = output.fileHandleForReading.readDataToEndOfFile()
        let errorData = error.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Outcome(
            status: process.terminationStatus, standardOutput: String(decoding: outputData, as: UTF8.self),
            standardError: String(decoding: errorData, as: UTF8.self))
    }

    /// The user the container image runs as (the Dockerfile's `USER 65532:65532`).
    static let containerUser = 65532

    /// Starts the binary in the background; its standard error goes to `log`. With
    /// `unprivilegedCopyIn`, it runs as `containerUser` from a copy in that directory (which that
    /// user can reach wherever the build is): when the tests run as root, through `setpriv`.
    static func start(_ arguments: [String], log: URL, unprivilegedCopyIn directory: URL? = nil) throws -> Process {
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let process = Process()
        process.executableURL = url
        process.arguments = arguments
        if let directory, getuid() == 0 {
            let copy = directory.appendingPathComponent("kube-impersonate-proxy")
            try FileManager.default.copyItem(at: url, to: copy)
            for path in [directory.path, copy.path] {
                try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: path)
            }
            process.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
            process.arguments =
                [
                    "--reuid=\(containerUser)", "--regid=\(containerUser)", "--clear-groups", "--inh-caps=-all",
                    "--bounding-set=-all", copy.path,
                ] + arguments
        }
        process.environment = baseEnvironment
        let handle = try FileHandle(forWritingTo: log)
        process.standardError = handle
        process.standardOutput = handle
        try process.run()
        return process
    }
}

/// A free loopback port (bound, then released).
func freePort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0
        }
    }
    guard bound else { throw TestbedError("cannot find a free port") }
    return Int(UInt16(bigEndian: address.sin_port))
}

import Logging

extension Logging {
    /// Sets up logging to standard error, one line per event in `format`, at the klog-style
    /// verbosity `verbosity`.
    static func bootstrap(verbosity: Int, format: LogFormat) -> Logger {
        let level: Logger.Level =
            switch verbosity {
            case ..<2: .info
            case 2..<4: .debug
            default: .trace
            }
        LoggingSystem.bootstrap { _ in
            ProxyLogHandler(format: format, level: level)
        }
        return Logger(label: "kube-impersonate-proxy")
    }
}

/// A namespace for the executable's logging setup.
enum Logging {}

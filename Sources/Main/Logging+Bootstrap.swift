import Logging

extension Logging {
    /// Sets up logging to standard error at the klog-style verbosity `verbosity`.
    static func bootstrap(verbosity: Int) -> Logger {
        let level: Logger.Level =
            switch verbosity {
            case ..<2: .info
            case 2..<4: .debug
            default: .trace
            }
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        return Logger(label: "kube-impersonate-proxy")
    }
}

/// A namespace for the executable's logging setup.
enum Logging {}

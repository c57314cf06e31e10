import NIOCore
import NIOPosix

#if canImport(Glibc)
    import Glibc
#endif

/// TCP keep-alive on both of the proxy's kinds of connection, so a peer that vanished without
/// a word (a laptop closed, a node lost, a load balancer's flow dropped) is found out while the
/// connection is quiet, as a watch can be for a long time. The periods are those of the two
/// programs the proxy stands between.
enum TCPKeepAlive {
    /// Client connections: kube-apiserver's `defaultKeepAlivePeriod` for its own clients.
    static let clientPeriodSeconds = 180
    /// Connections to the API server: client-go's dialer (`KeepAlive: 30 * time.Second`), so
    /// a watch through the proxy notices a dead API server as soon as kubectl itself would.
    static let upstreamPeriodSeconds = 30

    /// The options that turn keep-alive on with `seconds` of quiet before the first probe and
    /// between probes (Go's period sets both); the probe count is the system's.
    static func options(periodSeconds seconds: Int) -> [(ChannelOptions.Types.SocketOption, SocketOptionValue)] {
        var options: [(ChannelOptions.Types.SocketOption, SocketOptionValue)] = [
            (.socketOption(.so_keepalive), 1)
        ]
        #if os(Linux)
            options.append((.tcpOption(NIOBSDSocket.Option(rawValue: TCP_KEEPIDLE)), SocketOptionValue(seconds)))
            options.append((.tcpOption(NIOBSDSocket.Option(rawValue: TCP_KEEPINTVL)), SocketOptionValue(seconds)))
        #endif
        return options
    }
}

extension ServerBootstrap {
    /// Keep-alive on every accepted connection.
    func childKeepAlive(periodSeconds: Int) -> ServerBootstrap {
        TCPKeepAlive.options(periodSeconds: periodSeconds).reduce(self) { bootstrap, option in
            bootstrap.childChannelOption(option.0, value: option.1)
        }
    }
}

extension ClientBootstrap {
    /// Keep-alive on the connection.
    func keepAlive(periodSeconds: Int) -> ClientBootstrap {
        TCPKeepAlive.options(periodSeconds: periodSeconds).reduce(self) { bootstrap, option in
            bootstrap.channelOption(option.0, value: option.1)
        }
    }
}

import NIOCore

extension SocketAddress {
    /// The client's IP address as the access log and `X-Forwarded-For` give it. On the default
    /// listener (`:8080`, a dual-stack socket) an IPv4 client arrives as an IPv4-mapped IPv6
    /// address, `::ffff:10.1.2.3`; it is given as `10.1.2.3`, as Go's net package (and so
    /// kube-apiserver) writes the same peer.
    var clientIPAddress: String? {
        guard let address = ipAddress else { return nil }
        let mappedPrefix = "::ffff:"
        guard case .v6 = self, address.utf8.count > mappedPrefix.utf8.count,
            address.lowercased().hasPrefix(mappedPrefix)
        else { return address }
        let rest = address.dropFirst(mappedPrefix.count)
        // `::ffff:1.2.3.4` only: the same prefix before hexadecimal groups is another address.
        return rest.contains(".") ? String(rest) : address
    }
}

import NIOConcurrencyHelpers
import NIOCore

/// What HTTP/2 clients told a stand-in server about flow control, read from the bytes as they
/// arrive (before NIO's HTTP/2 handler consumes the frames): the SETTINGS each connection sent,
/// and the WINDOW_UPDATE increments for each connection as a whole (stream 0).
public struct HTTP2FlowControlLog: Sendable {
    /// Each connection's SETTINGS parameters (identifier, value), in the order they came;
    /// acknowledgements left out.
    public var settings: [[(identifier: UInt16, value: UInt32)]] = []
    /// Each connection's stream-0 WINDOW_UPDATE increments, added up.
    public var connectionWindowIncrements: [Int] = []

    /// SETTINGS_INITIAL_WINDOW_SIZE.
    public static let initialWindowSize: UInt16 = 0x4
}

/// Sits between TLS and the HTTP/2 handler of a server connection and passes every byte on,
/// recording into `log` the flow-control frames it sees.
final class HTTP2FlowControlRecorder: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private let log: NIOLockedValueBox<HTTP2FlowControlLog>
    private var index: Int?
    private var pending = ByteBuffer()
    private var prefaceLeft = 24

    init(log: NIOLockedValueBox<HTTP2FlowControlLog>) {
        self.log = log
    }

    func handlerAdded(context: ChannelHandlerContext) {
        index = log.withLockedValue { log in
            log.settings.append([])
            log.connectionWindowIncrements.append(0)
            return log.settings.count - 1
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        pending.writeBuffer(&bytes)
        parseFrames()
        context.fireChannelRead(data)
    }

    private func parseFrames() {
        if prefaceLeft > 0 {
            let skipped = min(prefaceLeft, pending.readableBytes)
            pending.moveReaderIndex(forwardBy: skipped)
            prefaceLeft -= skipped
        }
        while let header = pending.getBytes(at: pending.readerIndex, length: 9) {
            let length = Int(Self.bigEndian(header[0..<3]))
            let (type, flags) = (header[3], header[4])
            let stream = Self.bigEndian(header[5..<9]) & 0x7fff_ffff
            guard let payload = pending.getBytes(at: pending.readerIndex + 9, length: length) else { return }
            pending.moveReaderIndex(forwardBy: 9 + length)
            guard let index else { continue }
            if type == 0x4, flags & 0x1 == 0 {
                var entries: [(identifier: UInt16, value: UInt32)] = []
                for offset in stride(from: 0, to: payload.count - 5, by: 6) {
                    let identifier = UInt16(Self.bigEndian(payload[offset..<offset + 2]))
                    entries.append((identifier, Self.bigEndian(payload[offset + 2..<offset + 6])))
                }
                log.withLockedValue { $0.settings[index] += entries }
            } else if type == 0x8, stream == 0, payload.count == 4 {
                let increment = Int(Self.bigEndian(payload[0..<4]) & 0x7fff_ffff)
                log.withLockedValue { $0.connectionWindowIncrements[index] += increment }
            }
        }
        pending.discardReadBytes()
    }

    private static func bigEndian(_ bytes: ArraySlice<UInt8>) -> UInt32 {
        bytes.reduce(0) { $0 << 8 | UInt32($1) }
    }
}

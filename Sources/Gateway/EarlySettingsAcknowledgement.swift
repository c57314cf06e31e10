import NIOCore

/// Lets a client's first HTTP/2 request carry as many header bytes as the proxy advertises
/// (`ProxyServer.maximumHeaderBytes`), not NIO's 16 KiB.
///
/// `NIOHTTP2Handler` applies its own SETTINGS, the larger header-list limit among them, only
/// when the client acknowledges them. A client sends its first request right after its preface,
/// before that acknowledgement: kubectl's carries the bearer token, so a token of more than
/// 16 KiB (a user with hundreds of groups) failed every command over HTTP/2, where
/// kube-apiserver takes it. The proxy's other setting, 100 concurrent streams, is what NIO
/// enforces from a connection's start anyway: applied at once, only the header limit changes.
///
/// Sits in front of `NIOHTTP2Handler`, in the client's byte stream. After the client's preface
/// and its first SETTINGS frame it inserts a SETTINGS acknowledgement, so NIO applies its
/// settings before it decodes anything else. It then drops the client's own acknowledgement,
/// the first SETTINGS frame on stream 0 with the ACK flag and no payload, and leaves the
/// pipeline. It reads frame headers only and passes everything else on as slices of what it
/// read, uncopied, for as long as the client takes to acknowledge.
///
/// It depends on what the proxy's settings are (`ProxyServer.http2Configuration`, checked by a
/// test): applied early, a lower window, frame size or header table would break a client that
/// has not seen them yet.
final class EarlySettingsAcknowledgement: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    static let prefaceLength = 24
    static let frameHeaderLength = 9
    static let settingsType: UInt8 = 0x4
    static let acknowledgedFlag: UInt8 = 0x1
    static let acknowledgement: [UInt8] = [0, 0, 0, settingsType, acknowledgedFlag, 0, 0, 0, 0]

    private enum State {
        /// Passing the client's connection preface.
        case preface(remaining: Int)
        /// Reading a frame's header: the client's first (its SETTINGS, after which the
        /// acknowledgement goes in), or a later one, looked at for the client's acknowledgement.
        case header(first: Bool)
        /// Passing a frame's payload.
        case payload(remaining: Int, first: Bool)
        case done
    }

    private var state = State.preface(remaining: prefaceLength)
    /// A frame header split across reads, held until it is whole.
    private var header: [UInt8] = []

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var input = unwrapInboundIn(data)
        var pieces: [ByteBuffer] = []
        while input.readableBytes > 0, !isDone {
            step(&input, into: &pieces)
        }
        if input.readableBytes > 0 { pieces.append(input) }
        for piece in pieces where piece.readableBytes > 0 { context.fireChannelRead(wrapInboundOut(piece)) }
        if isDone { context.pipeline.syncOperations.removeHandler(context: context, promise: nil) }
    }

    private var isDone: Bool {
        if case .done = state { return true }
        return false
    }

    /// Takes what the current state needs from `input`; what is to be passed on goes to `pieces`.
    private func step(_ input: inout ByteBuffer, into pieces: inout [ByteBuffer]) {
        switch state {
        case .preface(let remaining):
            let passed = pass(remaining, from: &input, into: &pieces)
            state = passed == remaining ? .header(first: true) : .preface(remaining: remaining - passed)
        case .header(let first):
            guard let frame = readHeader(&input) else { return }
            defer { header.removeAll() }
            let isSettings = frame.type == Self.settingsType
            if !first && isSettings && frame.flags & Self.acknowledgedFlag != 0 && frame.length == 0
                && frame.onConnection
            {
                // The client's acknowledgement, already given: dropped.
                state = .done
                return
            }
            pieces.append(ByteBuffer(bytes: header))
            if first && !isSettings {
                // Anything but SETTINGS first is NIO's protocol error to report, unchanged.
                state = .done
            } else {
                state = .payload(remaining: frame.length, first: first)
                endFrameIfComplete(into: &pieces)
            }
        case .payload(let remaining, let first):
            let passed = pass(remaining, from: &input, into: &pieces)
            state = .payload(remaining: remaining - passed, first: first)
            endFrameIfComplete(into: &pieces)
        case .done:
            return
        }
    }

    /// Once a frame's payload has passed: after the client's first SETTINGS, the
    /// acknowledgement NIO is to see; then the next frame's header.
    private func endFrameIfComplete(into pieces: inout [ByteBuffer]) {
        guard case .payload(0, let first) = state else { return }
        if first { pieces.append(ByteBuffer(bytes: Self.acknowledgement)) }
        state = .header(first: false)
    }

    /// Moves up to `count` bytes of `input` to `pieces`, as a slice; returns how many.
    private func pass(_ count: Int, from input: inout ByteBuffer, into pieces: inout [ByteBuffer]) -> Int {
        let passed = min(count, input.readableBytes)
        if let slice = input.readSlice(length: passed) { pieces.append(slice) }
        return passed
    }

    /// Adds bytes from `input` to the held frame header; once it has all nine, what they say
    /// (the header stays in `header`).
    private func readHeader(_ input: inout ByteBuffer) -> (length: Int, type: UInt8, flags: UInt8, onConnection: Bool)?
    {
        let wanted = Self.frameHeaderLength - header.count
        if let bytes = input.readBytes(length: min(wanted, input.readableBytes)) { header += bytes }
        guard header.count == Self.frameHeaderLength else { return nil }
        let length = Int(header[0]) << 16 | Int(header[1]) << 8 | Int(header[2])
        // The stream identifier, reserved bit ignored.
        let onConnection = header[5] & 0x7F == 0 && header[6] == 0 && header[7] == 0 && header[8] == 0
        return (length, header[3], header[4], onConnection)
    }
}

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
/// the first SETTINGS frame with the ACK flag, and leaves the pipeline. It reads only frame
/// headers, never payloads. A client that sends no acknowledgement within `scanLimit` frames
/// is left to NIO: its late acknowledgement is then a second one, a protocol error.
final class EarlySettingsAcknowledgement: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    /// Frames looked at for the client's acknowledgement before giving up.
    static let scanLimit = 1_000
    static let prefaceLength = 24
    static let frameHeaderLength = 9
    static let settingsType: UInt8 = 0x4
    static let acknowledgedFlag: UInt8 = 0x1

    private enum State {
        /// Passing the client's connection preface.
        case preface(remaining: Int)
        /// Reading the header of the client's first frame (its SETTINGS), then passing its
        /// payload; the acknowledgement goes in after it.
        case firstFrame
        case firstFramePayload(remaining: Int)
        /// Reading frame headers for the client's acknowledgement, passing the payloads.
        case scanning
        case scanningPayload(remaining: Int)
        case done
    }

    private var state = State.preface(remaining: prefaceLength)
    /// A frame header split across reads, held until it is whole.
    private var header: [UInt8] = []
    private var framesScanned = 0

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var input = unwrapInboundIn(data)
        var output = context.channel.allocator.buffer(capacity: input.readableBytes + Self.frameHeaderLength)
        while input.readableBytes > 0, !isDone {
            step(&input, into: &output)
        }
        output.writeBuffer(&input)
        if output.readableBytes > 0 { context.fireChannelRead(wrapInboundOut(output)) }
        if isDone { context.pipeline.syncOperations.removeHandler(context: context, promise: nil) }
    }

    private var isDone: Bool {
        if case .done = state { return true }
        return false
    }

    /// Takes what the current state needs from `input`: bytes to pass go to `output`.
    private func step(_ input: inout ByteBuffer, into output: inout ByteBuffer) {
        switch state {
        case .preface(let remaining):
            let passed = pass(remaining, from: &input, into: &output)
            state = passed == remaining ? .firstFrame : .preface(remaining: remaining - passed)
        case .firstFrame:
            guard let (length, type, _) = readHeader(&input) else { return }
            output.writeBytes(header)
            header.removeAll()
            // Anything but SETTINGS first is NIO's protocol error to report, unchanged.
            guard type == Self.settingsType else {
                state = .done
                return
            }
            if length == 0 {
                finishFirstFrame(into: &output)
            } else {
                state = .firstFramePayload(remaining: length)
            }
        case .firstFramePayload(let remaining):
            let passed = pass(remaining, from: &input, into: &output)
            if passed == remaining {
                finishFirstFrame(into: &output)
            } else {
                state = .firstFramePayload(remaining: remaining - passed)
            }
        case .scanning:
            guard let (length, type, flags) = readHeader(&input) else { return }
            framesScanned += 1
            if type == Self.settingsType && flags & Self.acknowledgedFlag != 0 && length == 0 {
                // The client's acknowledgement, already given: dropped.
                header.removeAll()
                state = .done
                return
            }
            output.writeBytes(header)
            header.removeAll()
            if framesScanned >= Self.scanLimit {
                state = .done
            } else {
                state = length == 0 ? .scanning : .scanningPayload(remaining: length)
            }
        case .scanningPayload(let remaining):
            let passed = pass(remaining, from: &input, into: &output)
            state = passed == remaining ? .scanning : .scanningPayload(remaining: remaining - passed)
        case .done:
            return
        }
    }

    /// After the client's first SETTINGS: the acknowledgement NIO is to see, then the scan.
    private func finishFirstFrame(into output: inout ByteBuffer) {
        output.writeBytes([0, 0, 0, Self.settingsType, Self.acknowledgedFlag, 0, 0, 0, 0])
        state = .scanning
    }

    /// Moves up to `count` bytes from `input` to `output`; returns how many.
    private func pass(_ count: Int, from input: inout ByteBuffer, into output: inout ByteBuffer) -> Int {
        let passed = min(count, input.readableBytes)
        if var slice = input.readSlice(length: passed) { output.writeBuffer(&slice) }
        return passed
    }

    /// Adds bytes from `input` to the held frame header; once it has all nine: the payload
    /// length, the type and the flags (the header stays in `header`).
    private func readHeader(_ input: inout ByteBuffer) -> (length: Int, type: UInt8, flags: UInt8)? {
        let wanted = Self.frameHeaderLength - header.count
        if let bytes = input.readBytes(length: min(wanted, input.readableBytes)) { header += bytes }
        guard header.count == Self.frameHeaderLength else { return nil }
        let length = Int(header[0]) << 16 | Int(header[1]) << 8 | Int(header[2])
        return (length, header[3], header[4])
    }
}

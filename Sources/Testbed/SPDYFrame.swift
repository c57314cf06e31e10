import NIOCore

/// One SPDY/3.1 frame, as far as a kubelet-like server needs them (SPDY/3 draft, section 2).
/// Header names are lowercase; a value carrying several NUL-separated values is split into
/// several pairs.
enum SPDYFrame {
    case synStream(stream: UInt32, headers: [(name: String, value: String)], fin: Bool)
    case synReply(stream: UInt32, headers: [(name: String, value: String)], fin: Bool)
    case rstStream(stream: UInt32, status: UInt32)
    /// Settings are read and ignored: nothing here has limits to announce or honour.
    case settings
    case ping(id: UInt32)
    case goAway(lastGoodStream: UInt32, status: UInt32)
    case headers(stream: UInt32, headers: [(name: String, value: String)], fin: Bool)
    /// Flow control: spdystream (kubectl's and kubelet's side) neither sends nor honours these.
    case windowUpdate(stream: UInt32, delta: UInt32)
    case data(stream: UInt32, bytes: ByteBuffer, fin: Bool)

    static let version: UInt16 = 3
    static let finFlag: UInt8 = 0x01

    /// RST_STREAM status codes used here.
    static let protocolError: UInt32 = 1
    static let cancel: UInt32 = 5

    enum ControlType: UInt16 {
        case synStream = 1
        case synReply = 2
        case rstStream = 3
        case settings = 4
        case ping = 6
        case goAway = 7
        case headers = 8
        case windowUpdate = 9
    }
}

/// A frame that breaks the framing rules; the connection cannot go on after one.
struct SPDYFramingError: Error, CustomStringConvertible {
    var description: String
}

/// Splits a byte stream into frames, decompressing header blocks with the connection's one
/// inbound compression context.
struct SPDYFrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = SPDYFrame

    private let inflater: SPDYHeaderInflater

    init() throws {
        self.inflater = try SPDYHeaderInflater()
    }

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let first = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self),
            let second = buffer.getInteger(at: buffer.readerIndex + 4, as: UInt32.self)
        else { return .needMoreData }
        let flags = UInt8(second >> 24)
        let length = Int(second & 0x00ff_ffff)
        guard buffer.readableBytes >= 8 + length else { return .needMoreData }
        buffer.moveReaderIndex(forwardBy: 8)
        guard var payload = buffer.readSlice(length: length) else {
            throw SPDYFramingError(description: "frame shorter than its length")
        }
        let frame: SPDYFrame?
        if first & 0x8000_0000 == 0 {
            frame = .data(stream: first & 0x7fff_ffff, bytes: payload, fin: flags & SPDYFrame.finFlag != 0)
        } else {
            let version = UInt16((first >> 16) & 0x7fff)
            guard version == SPDYFrame.version else {
                throw SPDYFramingError(description: "SPDY version \(version), not 3")
            }
            frame = try control(
                SPDYFrame.ControlType(rawValue: UInt16(first & 0xffff)), flags: flags, payload: &payload)
        }
        if let frame { context.fireChannelRead(wrapInboundOut(frame)) }
        return .continue
    }

    mutating func decodeLast(
        context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool
    ) throws -> DecodingState {
        while try decode(context: context, buffer: &buffer) == .continue {}
        return .needMoreData
    }

    /// The control frame in `payload`; nil for a type this server does not know (skipped, as
    /// the draft says).
    private func control(_ type: SPDYFrame.ControlType?, flags: UInt8, payload: inout ByteBuffer) throws
        -> SPDYFrame?
    {
        let fin = flags & SPDYFrame.finFlag != 0
        func word() throws -> UInt32 {
            guard let value = payload.readInteger(as: UInt32.self) else {
                throw SPDYFramingError(description: "control frame too short")
            }
            return value
        }
        switch type {
        case .synStream:
            let stream = try word() & 0x7fff_ffff
            _ = try word()  // associated-to stream
            payload.moveReaderIndex(forwardBy: min(2, payload.readableBytes))  // priority, slot
            return .synStream(stream: stream, headers: try headerBlock(&payload), fin: fin)
        case .synReply:
            let stream = try word() & 0x7fff_ffff
            return .synReply(stream: stream, headers: try headerBlock(&payload), fin: fin)
        case .headers:
            let stream = try word() & 0x7fff_ffff
            return .headers(stream: stream, headers: try headerBlock(&payload), fin: fin)
        case .rstStream:
            return .rstStream(stream: try word() & 0x7fff_ffff, status: try word())
        case .settings:
            return .settings
        case .ping:
            return .ping(id: try word())
        case .goAway:
            return .goAway(lastGoodStream: try word() & 0x7fff_ffff, status: try word())
        case .windowUpdate:
            return .windowUpdate(stream: try word() & 0x7fff_ffff, delta: try word() & 0x7fff_ffff)
        case nil:
            return nil
        }
    }

    private func headerBlock(_ payload: inout ByteBuffer) throws -> [(name: String, value: String)] {
        var block = ByteBuffer(bytes: try inflater.decompress(Array(payload.readableBytesView)))
        func string() throws -> String {
            guard let length = block.readInteger(as: UInt32.self),
                let text = block.readString(length: Int(length))
            else { throw SPDYFramingError(description: "truncated header block") }
            return text
        }
        guard let count = block.readInteger(as: UInt32.self) else {
            throw SPDYFramingError(description: "empty header block")
        }
        var headers: [(name: String, value: String)] = []
        for _ in 0..<count {
            let name = try string()
            for value in try string().split(separator: "\0", omittingEmptySubsequences: false) {
                headers.append((name, String(value)))
            }
        }
        return headers
    }
}

/// Serializes frames, compressing header blocks with the connection's one outbound context.
struct SPDYFrameEncoder {
    private let deflater: SPDYHeaderDeflater

    init() throws {
        self.deflater = try SPDYHeaderDeflater()
    }

    func encode(_ frame: SPDYFrame, allocator: ByteBufferAllocator) throws -> ByteBuffer {
        var payload = allocator.buffer(capacity: 16)
        var flags: UInt8 = 0
        let type: SPDYFrame.ControlType
        switch frame {
        case .data(let stream, let bytes, let fin):
            var buffer = allocator.buffer(capacity: 8 + bytes.readableBytes)
            buffer.writeInteger(stream & 0x7fff_ffff)
            buffer.writeInteger(UInt32(fin ? SPDYFrame.finFlag : 0) << 24 | UInt32(bytes.readableBytes))
            buffer.writeImmutableBuffer(bytes)
            return buffer
        case .synStream(let stream, let headers, let fin):
            type = .synStream
            flags = fin ? SPDYFrame.finFlag : 0
            payload.writeInteger(stream)
            payload.writeInteger(UInt32(0))
            payload.writeInteger(UInt16(0))
            payload.writeBytes(try deflater.compress(Self.headerBlock(headers)))
        case .synReply(let stream, let headers, let fin):
            type = .synReply
            flags = fin ? SPDYFrame.finFlag : 0
            payload.writeInteger(stream)
            payload.writeBytes(try deflater.compress(Self.headerBlock(headers)))
        case .headers(let stream, let headers, let fin):
            type = .headers
            flags = fin ? SPDYFrame.finFlag : 0
            payload.writeInteger(stream)
            payload.writeBytes(try deflater.compress(Self.headerBlock(headers)))
        case .rstStream(let stream, let status):
            type = .rstStream
            payload.writeMultipleIntegers(stream, status)
        case .settings:
            type = .settings
            payload.writeInteger(UInt32(0))
        case .ping(let id):
            type = .ping
            payload.writeInteger(id)
        case .goAway(let lastGoodStream, let status):
            type = .goAway
            payload.writeMultipleIntegers(lastGoodStream, status)
        case .windowUpdate(let stream, let delta):
            type = .windowUpdate
            payload.writeMultipleIntegers(stream, delta)
        }
        var buffer = allocator.buffer(capacity: 8 + payload.readableBytes)
        buffer.writeInteger(0x8000_0000 | UInt32(SPDYFrame.version) << 16 | UInt32(type.rawValue))
        buffer.writeInteger(UInt32(flags) << 24 | UInt32(payload.readableBytes))
        buffer.writeBuffer(&payload)
        return buffer
    }

    /// A plain header block: a count, then length-prefixed names and values.
    private static func headerBlock(_ headers: [(name: String, value: String)]) -> [UInt8] {
        var block = ByteBuffer()
        block.writeInteger(UInt32(headers.count))
        for (name, value) in headers {
            for text in [name.lowercased(), value] {
                block.writeInteger(UInt32(text.utf8.count))
                block.writeString(text)
            }
        }
        return Array(block.readableBytesView)
    }
}

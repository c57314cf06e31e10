import NIOCore
import NIOEmbedded
import NIOHPACK
import NIOHTTP2
import Testbed
import Testing

@testable import Gateway

/// The proxy's header-block rules against NIO's own check, which they replace: generated
/// request blocks go through a client and a server `NIOHTTP2Handler` joined in memory, the
/// server with its check on, and through `HTTP2StreamsHandler.requestHead`. A block NIO refuses
/// must make no request head. (The proxy is stricter in places of its own, such as a `:path`
/// that does not start with `/`, so the reverse is not required.)
@Suite("HTTP/2 request rules, against NIO's")
struct HTTP2FieldRulesDifferentialTests {
    /// Collects what the server side's handler passes on: the header blocks it accepted.
    private final class Accepted: ChannelInboundHandler {
        typealias InboundIn = HTTP2Frame
        var streams: Set<HTTP2StreamID> = []

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let frame = unwrapInboundIn(data)
            guard case .headers = frame.payload else { return }
            streams.insert(frame.streamID)
            // Answered, so that the stream closes and the next has room.
            let answer = HTTP2Frame.FramePayload.Headers(headers: [":status": "200"], endStream: true)
            context.writeAndFlush(NIOAny(HTTP2Frame(streamID: frame.streamID, payload: .headers(answer))), promise: nil)
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {}
    }

    /// A client and a server joined by moving bytes between them until neither has more: NIO's
    /// checks off on the client, its header-block check on at the server.
    private struct Pair {
        let client = EmbeddedChannel()
        let server = EmbeddedChannel()
        let accepted = Accepted()

        init() throws {
            var unchecked = NIOHTTP2Handler.ConnectionConfiguration()
            unchecked.headerBlockValidation = .disabled
            unchecked.contentLengthValidation = .disabled
            var streams = NIOHTTP2Handler.StreamConfiguration()
            streams.streamResetFrameRateLimit.maximumCount = 100_000
            try client.pipeline.syncOperations.addHandler(
                NIOHTTP2Handler(mode: .client, connectionConfiguration: unchecked, streamConfiguration: streams))
            // The header-block check only: NIO's content-length check stays on in the proxy.
            var checked = NIOHTTP2Handler.ConnectionConfiguration()
            checked.contentLengthValidation = .disabled
            checked.maximumConnectionGlitches = 100_000
            var serverStreams = NIOHTTP2Handler.StreamConfiguration()
            serverStreams.streamErrorRateLimit.maximumCount = 100_000
            try server.pipeline.syncOperations.addHandler(
                NIOHTTP2Handler(mode: .server, connectionConfiguration: checked, streamConfiguration: serverStreams))
            try server.pipeline.syncOperations.addHandler(accepted)
            try client.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
            try server.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
            try exchange()
        }

        func exchange() throws {
            var moved = true
            while moved {
                moved = false
                while let bytes = try client.readOutbound(as: ByteBuffer.self) {
                    try server.writeInbound(bytes)
                    moved = true
                }
                while let bytes = try server.readOutbound(as: ByteBuffer.self) {
                    try client.writeInbound(bytes)
                    moved = true
                }
            }
        }

        /// Whether NIO's server accepted `block` as stream `id`'s request.
        func nioAccepts(_ block: HPACKHeaders, id: HTTP2StreamID) throws -> Bool {
            let headers = HTTP2Frame.FramePayload.Headers(headers: block, endStream: true)
            try client.writeOutbound(HTTP2Frame(streamID: id, payload: .headers(headers)))
            try exchange()
            return accepted.streams.contains(id)
        }
    }

    /// Names and values a request block is made of, the awkward ones among them. ASCII only:
    /// with a non-ASCII name among them, NIO's HPACK encoder and decoder (the two sides here)
    /// fell out of step a few hundred blocks later, for a reason not found.
    static let pseudoNames = [":method", ":scheme", ":path", ":authority", ":status", ":protocol", ":x", ":"]
    static let names = [
        "accept", "host", "te", "content-length", "connection", "keep-alive", "proxy-connection",
        "transfer-encoding", "upgrade", "Accept", "x y", "x:y", "x\u{7F}", "authorization", "x-note",
    ]
    static let values = [
        "GET", "CONNECT", "https", "/api/v1/namespaces", "*", "", "trailers", "gzip", "a b", "a\tb",
        "a\rb", "a\nb", "a\u{0}b", "\u{7F}", "5", "kubernetes:443",
    ]

    /// A block from a seeded generator: pseudo-headers (mostly the four, in any order, some
    /// missing or repeated) and then fields, with now and then a pseudo-header among them.
    static func block(_ random: inout SplitMix64) -> HPACKHeaders {
        var fields: [(String, String)] = []
        var pseudo = [(":method", "GET"), (":scheme", "https"), (":path", "/api/v1/namespaces")]
        pseudo.append((":authority", "kubernetes"))
        pseudo.shuffle(using: &random)
        for index in pseudo.indices.reversed() where random.next() % 6 == 0 { pseudo.remove(at: index) }
        for index in pseudo.indices where random.next() % 5 == 0 {
            pseudo[index].1 = values[Int(random.next() % UInt64(values.count))]
        }
        if random.next() % 5 == 0 {
            pseudo.append((pseudoNames[Int(random.next() % UInt64(pseudoNames.count))], "x"))
        }
        fields += pseudo
        for _ in 0..<Int(random.next() % 4) {
            let name = names[Int(random.next() % UInt64(names.count))]
            fields.append((name, values[Int(random.next() % UInt64(values.count))]))
        }
        if random.next() % 8 == 0 { fields.append((":path", "/late")) }
        return HPACKHeaders(fields)
    }

    static let blockCount = 3_000

    @Test("no block NIO refuses makes a request head (3 000 generated blocks)")
    func neverMoreLenient() throws {
        let pair = try Pair()
        var random = SplitMix64(seed: 0x6b69_7021)
        var refusedByNIO = 0
        var disagreements: [String] = []
        for index in 0..<Self.blockCount {
            let block = Self.block(&random)
            let nio = try pair.nioAccepts(block, id: HTTP2StreamID(2 * index + 1))
            if !nio { refusedByNIO += 1 }
            if !nio && HTTP2StreamsHandler.requestHead(block, endStream: true) != nil {
                disagreements.append("#\(index) \(Array(block))")
            }
        }
        #expect(disagreements.isEmpty, "NIO refused, the proxy made a head: \(disagreements.prefix(5))")
        // The generator must exercise both sides.
        #expect(
            refusedByNIO > Self.blockCount / 6 && refusedByNIO < Self.blockCount * 9 / 10, "\(refusedByNIO) refused")
    }
}

import NIOCore
import NIOEmbedded
import NIOHTTP2
import Testing

@testable import Gateway

/// The acknowledgement put in for the client after its first SETTINGS frame, and the client's
/// own taken out, whatever the reads the bytes arrive in.
@Suite("The client's SETTINGS acknowledgement, given at once")
struct EarlySettingsAcknowledgementTests {
    static let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)
    static let acknowledgement: [UInt8] = [0, 0, 0, 0x4, 0x1, 0, 0, 0, 0]

    static func frame(type: UInt8, flags: UInt8 = 0, stream: UInt8 = 0, payload: [UInt8]) -> [UInt8] {
        let length = payload.count
        return [UInt8(length >> 16), UInt8(length >> 8 & 0xFF), UInt8(length & 0xFF), type, flags, 0, 0, 0, stream]
            + payload
    }

    /// The client's side: preface, SETTINGS (one setting), WINDOW_UPDATE, HEADERS with a
    /// payload, its SETTINGS acknowledgement, then a DATA frame.
    static let settings = frame(type: 0x4, payload: [0, 3, 0, 0, 0, 100])
    static let windowUpdate = frame(type: 0x8, payload: [0, 0x0F, 0, 1])
    static let headers = frame(type: 0x1, flags: 0x4, stream: 1, payload: Array(repeating: 0x41, count: 300))
    static let data = frame(type: 0x0, flags: 0x1, stream: 1, payload: Array("{}".utf8))
    static let client = preface + settings + windowUpdate + headers + acknowledgement + data
    /// What NIO must see: the acknowledgement right after the client's SETTINGS, its own gone.
    static let expected = preface + settings + acknowledgement + windowUpdate + headers + data

    /// Feeds `bytes` in reads of `size` and returns what passed, and whether the handler left.
    static func feed(_ bytes: [UInt8], readsOf size: Int) throws -> (passed: [UInt8], left: Bool) {
        let channel = EmbeddedChannel(handler: EarlySettingsAcknowledgement())
        var offset = 0
        while offset < bytes.count {
            let end = min(offset + size, bytes.count)
            try channel.writeInbound(ByteBuffer(bytes: bytes[offset..<end]))
            offset = end
        }
        var passed: [UInt8] = []
        while let buffer = try channel.readInbound(as: ByteBuffer.self) { passed += Array(buffer.readableBytesView) }
        let left = (try? channel.pipeline.syncOperations.handler(type: EarlySettingsAcknowledgement.self)) == nil
        _ = try channel.finish()
        return (passed, left)
    }

    @Test("in one read, in reads of any size, byte by byte", arguments: [1, 2, 5, 8, 9, 10, 24, 33, 100, 4096])
    func reads(size: Int) throws {
        let (passed, left) = try Self.feed(Self.client, readsOf: size)
        #expect(passed == Self.expected)
        #expect(left, "the handler stayed after the client's acknowledgement")
    }

    @Test("a SETTINGS frame that is not an acknowledgement, or one with a payload, is passed on; the scan goes on")
    func otherSettings() throws {
        let more = Self.frame(type: 0x4, payload: [0, 4, 0, 1, 0, 0])
        let ackWithPayload = Self.frame(type: 0x4, flags: 0x1, payload: [0, 0, 0, 0, 0, 0])
        let bytes = Self.preface + Self.settings + more + ackWithPayload + Self.acknowledgement + Self.data
        let (passed, left) = try Self.feed(bytes, readsOf: 7)
        #expect(passed == Self.preface + Self.settings + Self.acknowledgement + more + ackWithPayload + Self.data)
        #expect(left)
    }

    @Test("a client whose first frame is not SETTINGS is passed on unchanged, for NIO to refuse")
    func firstFrameNotSettings() throws {
        let bytes = Self.preface + Self.headers + Self.settings
        let (passed, left) = try Self.feed(bytes, readsOf: 11)
        #expect(passed == bytes)
        #expect(left)
    }

    @Test("a client slow to acknowledge, after thousands of frames, still has its acknowledgement dropped")
    func lateAcknowledgement() throws {
        let frames = Array(repeating: Self.windowUpdate, count: 5_000).flatMap { $0 }
        let bytes = Self.preface + Self.settings + frames + Self.acknowledgement + Self.data
        let (passed, left) = try Self.feed(bytes, readsOf: 4096)
        #expect(passed == Self.preface + Self.settings + Self.acknowledgement + frames + Self.data)
        #expect(left)
    }

    @Test("an empty first SETTINGS, empty frames while scanning, an ACK on a stream (NIO's error) pass as they are")
    func emptyFrames() throws {
        let emptySettings = Self.frame(type: 0x4, payload: [])
        let emptyData = Self.frame(type: 0x0, stream: 1, payload: [])
        let ackOnStream = Self.frame(type: 0x4, flags: 0x1, stream: 3, payload: [])
        let bytes = Self.preface + emptySettings + emptyData + ackOnStream + Self.acknowledgement + Self.data
        for size in [1, 9, 4096] {
            let (passed, left) = try Self.feed(bytes, readsOf: size)
            #expect(
                passed == Self.preface + emptySettings + Self.acknowledgement + emptyData + ackOnStream + Self.data,
                "reads of \(size)")
            #expect(left)
        }
    }

    /// Taking the client's acknowledgement as given is right only for these settings: NIO
    /// starts at 100 concurrent streams, and a larger header list only lets more in. A lower
    /// window, frame size or header table, applied before the client has seen it, would break
    /// a client that follows RFC 9113.
    @Test("the listener's settings are 100 concurrent streams and a larger header list, nothing else")
    func settingsSafeToApplyEarly() {
        let settings = ProxyServer.http2Configuration.initialSettings
        #expect(settings.count == 2)
        #expect(settings.contains(HTTP2Setting(parameter: .maxConcurrentStreams, value: 100)))
        let headerList = settings.first { $0.parameter == .maxHeaderListSize }?.value ?? 0
        #expect(headerList >= 16_384)
    }

    @Test("a connection closed part way leaves nothing held but a partial frame header")
    func partial() throws {
        let bytes = Self.preface + Self.settings + Array(Self.headers.prefix(5))
        let (passed, left) = try Self.feed(bytes, readsOf: 3)
        #expect(passed == Self.preface + Self.settings + Self.acknowledgement)
        #expect(!left)
    }
}

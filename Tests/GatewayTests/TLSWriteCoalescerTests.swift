import NIOCore
import NIOEmbedded
import Testing

@testable import Gateway

@Suite("Joining a response's small writes before TLS makes records of them")
struct TLSWriteCoalescerTests {
    private func channel() throws -> EmbeddedChannel {
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(TLSWriteCoalescer())
        return channel
    }

    private func written(_ channel: EmbeddedChannel) throws -> [String] {
        var buffers: [String] = []
        while let data = try channel.readOutbound(as: IOData.self) {
            guard case .byteBuffer(let buffer) = data else { throw CoalescerTestError() }
            buffers.append(String(buffer: buffer))
        }
        return buffers
    }

    private struct CoalescerTestError: Error {}

    @Test("the small writes between two flushes go on as one buffer, in order, at the flush")
    func joinsUntilFlush() throws {
        let channel = try channel()
        for piece in ["HEADERS", "DATA-header", "payload", "END"] {
            channel.write(IOData.byteBuffer(ByteBuffer(string: piece)), promise: nil)
        }
        #expect(try written(channel).isEmpty, "nothing goes on before the flush")
        channel.flush()
        #expect(try written(channel) == ["HEADERSDATA-headerpayloadEND"])

        channel.writeAndFlush(IOData.byteBuffer(ByteBuffer(string: "alone")), promise: nil)
        #expect(try written(channel) == ["alone"])
        _ = try channel.finish()
    }

    @Test("a write with a promise, or one too large to join, goes on after what was joined, unchanged")
    func passesThroughInOrder() throws {
        let channel = try channel()
        channel.write(IOData.byteBuffer(ByteBuffer(string: "a")), promise: nil)
        channel.write(IOData.byteBuffer(ByteBuffer(string: "b")), promise: nil)
        let promise = channel.eventLoop.makePromise(of: Void.self)
        channel.write(IOData.byteBuffer(ByteBuffer(string: "promised")), promise: promise)
        let large = String(repeating: "x", count: TLSWriteCoalescer.limit)
        channel.write(IOData.byteBuffer(ByteBuffer(string: "c")), promise: nil)
        channel.write(IOData.byteBuffer(ByteBuffer(string: large)), promise: nil)
        channel.write(IOData.byteBuffer(ByteBuffer(string: "d")), promise: nil)
        channel.flush()
        #expect(try written(channel) == ["ab", "promised", "c", large, "d"])
        try promise.futureResult.wait()
        _ = try channel.finish()
    }
}

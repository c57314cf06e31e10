import NIOCore
import NIOPosix
import Testing

@testable import Gateway

@Suite("Flushes put off until the event loop has handled its round of I/O")
struct RoundFlushTests {
    /// The flushes that reach each connection's socket, in the order they come.
    final class FlushLog {
        var names: [String] = []
    }

    /// Logs every flush of its connection; `onFlush` runs at each.
    final class FlushRecorder: ChannelOutboundHandler {
        typealias OutboundIn = ByteBuffer
        let name: String
        let log: FlushLog
        var onFlush: (() -> Void)?

        init(name: String, log: FlushLog) {
            self.name = name
            self.log = log
        }

        func flush(context: ChannelHandlerContext) {
            log.names.append(name)
            onFlush?()
            context.flush()
        }
    }

    /// Where the writes and flushes start, behind the recorder, as a proxy handler's do.
    final class Writer: ChannelOutboundHandler {
        typealias OutboundIn = ByteBuffer
    }

    @Test(
        "the flushes of several connections asked for in one round run once each after it, in order, and one asked for while they run is not lost"
    )
    func oneFlushPerConnectionAfterTheRound() async throws {
        // One loop: every connection, and every task below, shares it, so the order is fixed.
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let loop = group.next()
        let server = try await ServerBootstrap(group: group).bind(host: "127.0.0.1", port: 0).get()
        var clients: [any Channel] = []
        for _ in 0..<3 {
            clients.append(try await ClientBootstrap(group: loop).connect(to: server.localAddress!).get())
        }
        let connections = clients
        let seen = try await loop.flatSubmit { () -> EventLoopFuture<[String]> in
            let log = FlushLog()
            var contexts: [ChannelHandlerContext] = []
            var recorders: [FlushRecorder] = []
            do {
                for (index, channel) in connections.enumerated() {
                    let recorder = FlushRecorder(name: ["a", "b", "c"][index], log: log)
                    let writer = Writer()
                    try channel.pipeline.syncOperations.addHandlers([recorder, writer])
                    contexts.append(try channel.pipeline.syncOperations.context(handler: writer))
                    recorders.append(recorder)
                }
            } catch {
                return loop.makeFailedFuture(error)
            }
            let flushes = [RoundFlush(), RoundFlush(), RoundFlush()]
            // c's flush is asked for from within a's, while the round's flushes run.
            recorders[0].onFlush = { flushes[2].schedule(contexts[2]) }
            for index in [0, 1, 0, 1] {
                contexts[index].write(NIOAny(ByteBuffer(string: "x")), promise: nil)
                flushes[index].schedule(contexts[index])
            }
            let duringTheRound = log.names
            let afterTheRound = loop.makePromise(of: [String].self)
            // Queued after the flushes' task: it runs once they have.
            loop.assumeIsolated().execute { afterTheRound.succeed(duringTheRound + ["|"] + log.names) }
            return afterTheRound.futureResult
        }.get()
        #expect(seen == ["|", "a", "b", "c"])
        for client in clients { try await client.close() }
        try await server.close()
        try await group.shutdownGracefully()
    }
}

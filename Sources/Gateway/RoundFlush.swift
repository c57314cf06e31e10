import NIOCore
import NIOPosix

/// Puts off a channel's flush until its event loop has handled the round of I/O events at hand
/// (NIO runs its tasks after each round): everything written to the channel in that round leaves
/// in one flush.
///
/// On loopback, under load, this was the largest single saving found (docs/benchmarks.md, item
/// 16): a flush that wakes a peer (the client, the API server) lets that peer's thread take the
/// CPU from the event loop in the middle of its round, about once per request. Flushed after the
/// round, the wake-ups come together, and an HTTP/2 connection's streams answered in one round
/// share a TLS record.
///
/// The flushes an event loop puts off in one round run from one task (`LoopRound`), not a task
/// per channel: a request made two of them (its client's and its API server connection's).
///
/// Only used on the channel's event loop.
final class RoundFlush {
    private var scheduled = false
    /// This channel's event loop's list of flushes put off, found on the first flush.
    private var round: LoopRound?

    /// Flushes `context` once the current round of I/O events is handled.
    func schedule(_ context: ChannelHandlerContext) {
        guard !scheduled else { return }
        scheduled = true
        if round == nil { round = LoopRound.current(for: context.eventLoop) }
        guard let round else {
            context.eventLoop.assumeIsolated().execute { self.run(context) }
            return
        }
        round.add(self, context)
    }

    /// Flushes now what a scheduled flush would: before a close, which drops what is unflushed.
    func flushNow(_ context: ChannelHandlerContext) {
        if scheduled { context.flush() }
    }

    fileprivate func run(_ context: ChannelHandlerContext) {
        scheduled = false
        context.flush()
    }
}

/// The flushes one event loop has put off until the end of its current round, run by one task.
final class LoopRound {
    private let eventLoop: any EventLoop
    private var pending: [(flush: RoundFlush, context: ChannelHandlerContext)] = []
    private var taskScheduled = false

    private init(eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    /// Each event loop thread's list.
    private static let loopRounds = ThreadSpecificVariable<NIOLoopBoundBox<LoopRound>>()

    /// The calling thread's list, when that thread is `eventLoop`'s; nil otherwise (an embedded
    /// event loop in a test), where each flush is a task of its own.
    static func current(for eventLoop: any EventLoop) -> LoopRound? {
        guard MultiThreadedEventLoopGroup.currentEventLoop === eventLoop else { return nil }
        if let round = loopRounds.currentValue { return round.value }
        let round = LoopRound(eventLoop: eventLoop)
        loopRounds.currentValue = NIOLoopBoundBox(round, eventLoop: eventLoop)
        return round
    }

    func add(_ flush: RoundFlush, _ context: ChannelHandlerContext) {
        pending.append((flush, context))
        guard !taskScheduled else { return }
        taskScheduled = true
        eventLoop.assumeIsolated().execute { self.runPending() }
    }

    private func runPending() {
        // A flush may lead to another being put off (a write made when a channel turns
        // writable): it joins the list and runs in this pass.
        var index = 0
        while index < pending.count {
            let (flush, context) = pending[index]
            index += 1
            flush.run(context)
        }
        pending.removeAll(keepingCapacity: true)
        taskScheduled = false
    }
}

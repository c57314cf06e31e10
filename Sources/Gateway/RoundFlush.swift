import NIOCore

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
/// Only used on the channel's event loop.
final class RoundFlush {
    private var scheduled = false

    /// Flushes `context` once the current round of I/O events is handled.
    func schedule(_ context: ChannelHandlerContext) {
        guard !scheduled else { return }
        scheduled = true
        context.eventLoop.assumeIsolated().execute {
            self.scheduled = false
            context.flush()
        }
    }

    /// Flushes now what a scheduled flush would: before a close, which drops what is unflushed.
    func flushNow(_ context: ChannelHandlerContext) {
        if scheduled { context.flush() }
    }
}

import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// Where log lines go: a file descriptor (standard error). A line logged on one of NIO's event
/// loops joins that loop's batch, which is written with one `write(2)` when the loop has
/// finished its current round of I/O and flushed what the round wrote: a loop that served many
/// requests in one wake-up writes their access-log lines together instead of making a system
/// call for each. A line logged
/// anywhere else is written at once. Every write holds one process-wide lock, so lines never
/// interleave; `flush()` writes what the loops still hold (at exit).
final class LogSink: Sendable {
    static let standardError = LogSink(descriptor: 2)

    /// A loop's batch is written at once when it grows past this, not at the end of the round.
    static let batchLimit = 64 * 1024

    private final class Batch: Sendable {
        let bytes = NIOLockedValueBox<[UInt8]>([])
    }

    private let descriptor: Int32
    private let writeLock = NIOLock()
    private let loopBatch = ThreadSpecificVariable<Batch>()
    /// Every loop's batch, for `flush()`.
    private let batches = NIOLockedValueBox<[Batch]>([])

    init(descriptor: Int32) {
        self.descriptor = descriptor
    }

    func write(_ line: String) {
        write { $0.append(contentsOf: line.utf8) }
    }

    /// Writes the line (or lines, newlines included) that `build` appends: on an event loop
    /// straight into that loop's batch, with no string in between.
    func write(_ build: (inout [UInt8]) -> Void) {
        guard let loop = MultiThreadedEventLoopGroup.currentEventLoop else {
            var bytes: [UInt8] = []
            build(&bytes)
            bytes.withUnsafeBufferPointer { writeNow($0) }
            return
        }
        let batch = loopBatch.currentValue ?? newLoopBatch()
        let (wasEmpty, isFull) = batch.bytes.withLockedValue { bytes in
            let wasEmpty = bytes.isEmpty
            build(&bytes)
            return (wasEmpty, bytes.count >= Self.batchLimit)
        }
        if isFull {
            write(batch)
        } else if wasEmpty {
            // Written once the loop has handled the I/O events at hand and then the tasks they
            // queued, in the same round: two hops, so that the round's flushes (`RoundFlush`,
            // queued as a response's upstream read completes, after this line was logged) send
            // the responses before this system call is made, not after it.
            loop.execute { loop.execute { self.write(batch) } }
        }
    }

    /// Writes every line the event loops still hold.
    func flush() {
        for batch in batches.withLockedValue({ $0 }) { write(batch) }
    }

    private func newLoopBatch() -> Batch {
        let batch = Batch()
        loopBatch.currentValue = batch
        batches.withLockedValue { $0.append(batch) }
        return batch
    }

    private func write(_ batch: Batch) {
        // Taken under the write lock, so two writers of one batch (its loop and `flush()`)
        // cannot put its lines out of order.
        writeLock.withLock {
            let bytes = batch.bytes.withLockedValue { bytes in
                defer { bytes.removeAll(keepingCapacity: true) }
                return bytes
            }
            bytes.withUnsafeBytes { StandardStream.write($0, to: descriptor) }
        }
    }

    private func writeNow(_ buffer: UnsafeBufferPointer<UInt8>) {
        writeLock.withLock { StandardStream.write(UnsafeRawBufferPointer(buffer), to: descriptor) }
    }
}

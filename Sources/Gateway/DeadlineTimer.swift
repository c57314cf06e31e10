import NIOCore

/// A timeout that an exchange sets and clears (the wait for a response head): on an HTTP/1.1
/// connection a `DeadlineTimer` of its own, on an HTTP/2 stream one its connection keeps for all
/// of its streams.
protocol ExchangeDeadline: AnyObject {
    /// Expire `after` from now, replacing any deadline set before.
    func set(after timeout: TimeAmount)
    /// Forget the deadline.
    func clear()
    /// Forget the deadline for good: it will not expire, and lets go of what it would have run.
    func cancel()
}

/// A timeout that many short waits in a row can share, for one channel's event loop.
///
/// Cancelling a scheduled task costs the event loop a lock and a linear search of its timer
/// heap, and scheduling one costs a lock, a heap insertion and a promise. A keep-alive connection
/// sets and clears a timeout on every request, so instead of cancelling, `clear()` only forgets
/// the deadline and `set(_:)` only moves it: the timer already scheduled fires at its old time,
/// finds the deadline later (or gone) and sets itself again (or stops). At most one task is
/// scheduled per timer, and at most one wake-up per timeout period is wasted.
///
/// Only touched on `eventLoop`.
final class DeadlineTimer: ExchangeDeadline {
    private let eventLoop: any EventLoop
    private let expired: () -> Void
    /// When it expires; nil when no deadline is set (or it has expired).
    private(set) var deadline: NIODeadline?
    private var scheduled: (task: Scheduled<Void>, at: NIODeadline)?

    /// `expired` runs on the event loop once a set deadline passes without being cleared first.
    init(eventLoop: any EventLoop, expired: @escaping () -> Void) {
        self.eventLoop = eventLoop
        self.expired = expired
    }

    /// Expire `after` from now, replacing any deadline set before.
    func set(after timeout: TimeAmount) {
        set(at: .now() + timeout)
    }

    /// Expire at `deadline`, replacing any deadline set before.
    func set(at deadline: NIODeadline) {
        self.deadline = deadline
        if let scheduled {
            guard scheduled.at > deadline else { return }
            scheduled.task.cancel()
            self.scheduled = nil
        }
        schedule(at: deadline)
    }

    /// Forget the deadline; the scheduled task, if any, stays and finds nothing to do.
    func clear() {
        deadline = nil
    }

    /// Forget the deadline and drop the scheduled task (when the channel goes away, so the
    /// event loop does not hold the task, and what it refers to, until it would have fired).
    func cancel() {
        deadline = nil
        scheduled?.task.cancel()
        scheduled = nil
    }

    private func schedule(at deadline: NIODeadline) {
        let task = eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { self.fire() }
        scheduled = (task, deadline)
    }

    private func fire() {
        scheduled = nil
        guard let deadline else { return }
        if deadline > .now() {
            schedule(at: deadline)
        } else {
            self.deadline = nil
            expired()
        }
    }
}

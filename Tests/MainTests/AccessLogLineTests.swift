import Foundation
import Gateway
import Logging
import NIOCore
import NIOPosix
import Synchronization
import Testing

@testable import Issuers
@testable import Main

/// The access log as the binary writes it: built straight from the entry, it must be the very
/// line the log handler makes of the `request` event, in both formats; and the sink that batches
/// the event loops' lines must write every line whole and in its loop's order.
@Suite("Access-log lines and the log sink")
struct AccessLogLineTests {
    static let entries: [AccessLogEntry] = [
        AccessLogEntry(
            identity: Identity(
                username: "alice@example.com", groups: ["dev", "ops team"], uid: nil, issuerName: "corp",
                expiresAt: 0),
            method: "GET", path: "/api/v1/namespaces", status: 200, bytes: 1148, duration: .microseconds(1845),
            upstreamLatency: .microseconds(1793), clientAddress: "127.0.0.1"),
        AccessLogEntry(
            identity: nil, method: "POST", path: "/api/v1/pods", status: 401, bytes: 129, duration: .milliseconds(2),
            upstreamLatency: nil, clientAddress: nil),
        AccessLogEntry(
            identity: Identity(
                username: "quote\" eq= tab\t nl\n", groups: [], uid: "u", issuerName: "idp \u{7F}",
                expiresAt: 0),
            method: "GET", path: "/api/v1/watch\u{1}x y", status: nil, bytes: 0, duration: .seconds(61),
            upstreamLatency: .zero, clientAddress: "::1"),
        // Hostile and unusual values: empty groups that still join to something, back slashes,
        // carriage returns, every control character's escape, non-ASCII and an emoji, a
        // negative duration (a clock bug must not make a malformed number).
        AccessLogEntry(
            identity: Identity(
                username: "José 🚀\\", groups: ["", ""], uid: nil, issuerName: "", expiresAt: 0),
            method: "PATCH", path: "/api/v1/ñ=\r\u{0}\u{1F}", status: 599, bytes: 9_223_372_036_854_775_807,
            duration: .nanoseconds(-5_000), upstreamLatency: .nanoseconds(999), clientAddress: "10.0.0.1"),
        AccessLogEntry(
            identity: Identity(
                username: "bob", groups: [""], uid: nil, issuerName: "a=b", expiresAt: 0),
            method: "GET", path: "", status: 200, bytes: -1, duration: .seconds(3_600),
            upstreamLatency: .microseconds(1), clientAddress: ""),
        AccessLogEntry(
            identity: Identity(
                username: "\u{7F}", groups: ["a,b", "plain", "tab\there", "quo\"te", "\u{2028}"], uid: nil,
                issuerName: "corp", expiresAt: 0),
            method: "DELETE", path: "/apis/x", status: 204, bytes: 0, duration: .zero, upstreamLatency: nil,
            clientAddress: "[::1]:5"),
        AccessLogEntry(
            identity: Identity(username: "carol", groups: ["dev"], uid: nil, issuerName: "corp", expiresAt: 0),
            method: "GET", path: "/api", status: 200, bytes: 10, duration: .microseconds(999_999),
            upstreamLatency: .milliseconds(1), clientAddress: "127.0.0.1"),
    ]

    @Test("the direct line equals the log handler's line of the request event", arguments: LogFormat.allCases)
    func sameLine(format: LogFormat) {
        let time = Date(timeIntervalSince1970: 1_800_000_000.123)
        for entry in Self.entries {
            let direct = ProxyLogHandler.line(
                format: format, time: time, level: .info, message: "request", fields: entry.fields)
            let event = ProxyLogHandler.line(
                format: format, time: time, level: .info, message: "request", metadata: entry.metadata)
            #expect(direct == event)
            #expect(direct.hasPrefix(format == .text ? "2027-01-15T08:00:00.123Z info request " : "{\"time\":"))
            #expect(direct.filter { $0 == "\n" }.count == 1 && direct.hasSuffix("\n"))
        }
    }

    @Test(
        "the line the proxy writes as bytes is the log handler's line, hostile values included",
        arguments: LogFormat.allCases)
    func bytesEqualHandlerLine(format: LogFormat) {
        let time = Date(timeIntervalSince1970: 1_800_000_000.123)
        for entry in Self.entries {
            var bytes: [UInt8] = []
            AccessLogLineBytes.append(entry, format: format, time: time, to: &bytes)
            let expected = ProxyLogHandler.line(
                format: format, time: time, level: .info, message: "request", metadata: entry.metadata)
            #expect(String(decoding: bytes, as: UTF8.self) == expected)
            #expect(bytes.filter { $0 == UInt8(ascii: "\n") }.count == 1 && bytes.last == UInt8(ascii: "\n"))
        }
        // Two entries into one batch: each appends its own line, whole.
        var batch: [UInt8] = []
        AccessLogLineBytes.append(Self.entries[0], format: format, time: time, to: &batch)
        AccessLogLineBytes.append(Self.entries[1], format: format, time: time, to: &batch)
        #expect(batch.filter { $0 == UInt8(ascii: "\n") }.count == 2)
    }

    @Test("a JSON access-log line is one JSON object whose fields are the entry's")
    func jsonLineParses() throws {
        let time = Date(timeIntervalSince1970: 1_800_000_000.123)
        for entry in Self.entries {
            var bytes: [UInt8] = []
            AccessLogLineBytes.append(entry, format: .json, time: time, to: &bytes)
            let object = try #require(try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: String])
            #expect(object["message"] == "request" && object["level"] == "info")
            #expect(object["user"] == (entry.identity?.username ?? "-"))
            #expect(object["groups"] == (entry.identity?.groups ?? []).joined(separator: ","))
            #expect(object["path"] == String(entry.path))
            #expect(object["bytes"] == String(entry.bytes))
        }
    }

    @Test("durations: milliseconds with three decimals, never negative")
    func durations() {
        #expect(AccessLogEntry.microseconds(.nanoseconds(-5_000)) == 0)
        let line = { (duration: Duration) -> String in
            var bytes: [UInt8] = []
            let entry = AccessLogEntry(
                identity: nil, method: "GET", path: "/", status: 200, bytes: 0, duration: duration,
                upstreamLatency: nil, clientAddress: nil)
            AccessLogLineBytes.append(entry, format: .text, time: Date(timeIntervalSince1970: 0), to: &bytes)
            return String(decoding: bytes, as: UTF8.self)
        }
        #expect(line(.microseconds(1_845)).contains(" duration_ms=1.845 "))
        #expect(line(.microseconds(7)).contains(" duration_ms=0.007 "))
        #expect(line(.seconds(61)).contains(" duration_ms=61000.000 "))
        #expect(line(.nanoseconds(-1)).contains(" duration_ms=0.000 "))
    }

    @Test("timestamps: RFC 3339 UTC with milliseconds, across leap days and the millisecond edge")
    func timestamps() {
        #expect(ProxyLogHandler.timestamp(Date(timeIntervalSince1970: 0)) == "1970-01-01T00:00:00.000Z")
        #expect(ProxyLogHandler.timestamp(Date(timeIntervalSince1970: 951_782_400.999)) == "2000-02-29T00:00:00.999Z")
        #expect(ProxyLogHandler.timestamp(Date(timeIntervalSince1970: 4_102_444_799.5)) == "2099-12-31T23:59:59.500Z")
    }

    @Test("a line logged on an event loop is written after the tasks queued behind it, the round's flushes among them")
    func sinkWritesAfterTheRoundsFlushes() async throws {
        var descriptors: [Int32] = [0, 0]
        #expect(pipe(&descriptors) == 0)
        let (readEnd, writeEnd) = (descriptors[0], descriptors[1])
        defer {
            close(readEnd)
            close(writeEnd)
        }
        let sink = LogSink(descriptor: writeEnd)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let loop = group.next()
        final class Pending: Sendable { let bytes = Mutex<Int32>(-1) }
        let pendingAtFlush = Pending()
        try await loop.submit {
            // As a response's end is handled: its access-log line, then its flush put off to
            // the end of the round (a task queued after the line).
            sink.write("request status=200\n")
            loop.execute {
                var pending: Int32 = 0
                _ = ioctl(readEnd, UInt(FIONREAD), &pending)
                pendingAtFlush.bytes.withLock { $0 = pending }
            }
        }.get()
        // Two rounds of tasks behind those: the line's second hop has run by then.
        try await loop.submit {}.get()
        try await loop.submit {}.get()
        try await group.shutdownGracefully()
        #expect(pendingAtFlush.bytes.withLock { $0 } == 0, "the log line was written before the flush")
        var pending: Int32 = 0
        _ = ioctl(readEnd, UInt(FIONREAD), &pending)
        #expect(pending == Int32("request status=200\n".utf8.count))
    }

    @Test("lines logged on event loops and off them are all written, whole, each loop's in its order")
    func sinkBatches() async throws {
        var descriptors: [Int32] = [0, 0]
        #expect(pipe(&descriptors) == 0)
        let (readEnd, writeEnd) = (descriptors[0], descriptors[1])
        defer { close(readEnd) }
        // A reader drains the pipe so the writers never block on a full one.
        let collected = Task.detached { () -> [UInt8] in
            var bytes: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 65_536)
            while true {
                let count = chunk.withUnsafeMutableBytes { read(readEnd, $0.baseAddress, $0.count) }
                if count <= 0 { return bytes }
                bytes += chunk[..<count]
            }
        }
        let sink = LogSink(descriptor: writeEnd)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let perLoop = 3_000
        let loops = [group.next(), group.next()]
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            for (index, loop) in loops.enumerated() {
                tasks.addTask {
                    try await loop.submit {
                        for line in 0..<perLoop {
                            sink.write("loop\(index) line\(line) " + String(repeating: "x", count: 80) + "\n")
                        }
                    }.get()
                }
            }
            try await tasks.waitForAll()
        }
        sink.write("outside\n")
        try await group.shutdownGracefully()
        sink.flush()
        close(writeEnd)
        let lines = String(decoding: await collected.value, as: UTF8.self).split(separator: "\n")
        #expect(lines.count == 2 * perLoop + 1)
        #expect(lines.contains("outside"))
        for index in 0..<2 {
            let ofLoop = lines.filter { $0.hasPrefix("loop\(index) ") }
            #expect(ofLoop.count == perLoop)
            #expect(ofLoop.enumerated().allSatisfy { $0.element.hasPrefix("loop\(index) line\($0.offset) x") })
            #expect(ofLoop.allSatisfy { $0.hasSuffix(String(repeating: "x", count: 80)) })
        }
    }
}

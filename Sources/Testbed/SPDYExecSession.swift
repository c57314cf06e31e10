import NIOCore

/// kubelet's side of `exec`/`attach` over SPDY with `v4.channel.k8s.io`: the client opens one
/// stream per `streamtype` (error, and stdin, stdout, stderr, resize as the request asks);
/// once all are open the `StandInCommand` starts. Its exit status goes to the error stream
/// as a `Status`; then every stream is finished and the client closes the connection.
final class SPDYExecSession: SPDYStreamService {
    private var command: StandInCommand
    private let expected: Set<String>
    private let tty: Bool
    private let recordSession: @Sendable (StandInUpgrades.SessionRecord) -> Void
    private var streams: [String: UInt32] = [:]
    private var started = false
    private var recorded = false

    init(uri: String, recordSession: @escaping @Sendable (StandInUpgrades.SessionRecord) -> Void) {
        self.command = StandInCommand(uri: uri)
        self.recordSession = recordSession
        let options = Dictionary(StandInUpgrades.parameters(uri), uniquingKeysWith: { first, _ in first })
        func on(_ name: String) -> Bool { options[name] == "true" || options[name] == "1" }
        self.tty = on("tty")
        var expected: Set<String> = ["error"]
        if on("stdin") { expected.insert("stdin") }
        if on("stdout") { expected.insert("stdout") }
        if on("stderr") && !tty { expected.insert("stderr") }
        if tty { expected.insert("resize") }
        self.expected = expected
    }

    func opened(_ stream: UInt32, headers: [String: String], connection: SPDYConnectionHandler) {
        guard let type = headers["streamtype"] else { return }
        streams[type] = stream
        if !started && expected.isSubset(of: streams.keys) {
            started = true
            carryOut(command.start(), connection: connection)
        }
    }

    func received(_ bytes: ByteBuffer, on stream: UInt32, connection: SPDYConnectionHandler) {
        guard stream == streams["stdin"] else { return }  // resize events are ignored
        carryOut(command.receive(stdin: Array(bytes.readableBytesView)), connection: connection)
    }

    func remoteClosed(_ stream: UInt32, reset: Bool, connection: SPDYConnectionHandler) {
        guard stream == streams["stdin"] else { return }
        carryOut(command.stdinClosed(), connection: connection)
    }

    func connectionEnded() {
        record()
    }

    private func carryOut(_ outputs: [StandInCommand.Output], connection: SPDYConnectionHandler) {
        for output in outputs {
            switch output {
            case .stdout(let bytes):
                if let stream = streams["stdout"] { connection.send(bytes, on: stream) }
            case .stderr(let bytes):
                if let stream = streams[tty ? "stdout" : "stderr"] { connection.send(bytes, on: stream) }
            case .exit(let code):
                finish(exitCode: code, connection: connection)
            }
        }
    }

    private func record() {
        guard !recorded else { return }
        recorded = true
        recordSession(command.record(transport: "SPDY/3.1 \(StandInUpgrades.spdyExecProtocol)"))
    }

    private func finish(exitCode: Int, connection: SPDYConnectionHandler) {
        record()
        if let error = streams["error"] {
            connection.send(Array(StandInCommand.status(exitCode: exitCode).utf8), on: error)
        }
        for stream in streams.values.sorted() { connection.finish(stream) }
        // The client closes the connection once it has read everything; one that never does
        // is cut off after a while.
        guard let eventLoop = connection.eventLoop else { return }
        let bound = NIOLoopBound(connection, eventLoop: eventLoop)
        eventLoop.scheduleTask(in: .seconds(5)) { bound.value.close() }
    }
}

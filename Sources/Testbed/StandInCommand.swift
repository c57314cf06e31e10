/// The program an exec or attach session "runs" in the stand-in, whatever protocol carries it
/// (the WebSocket channel protocol or SPDY streams): `echo ARGS…` prints its arguments; `cat`
/// (and attach) echo stdin to stdout until stdin closes; `tar …` (what `kubectl cp` runs) and
/// `sh` swallow stdin; anything else exits 127. A value: each event returns what the program
/// does in answer, and the session carries it out.
struct StandInCommand {
    enum Output: Equatable {
        case stdout([UInt8])
        case stderr([UInt8])
        case exit(Int)
    }

    let arguments: [String]
    let isAttach: Bool
    private(set) var stdin: [UInt8] = []
    private(set) var exitCode: Int?

    /// The command and the kind of session from an exec or attach request target.
    init(uri: String) {
        self.arguments = StandInUpgrades.parameters(uri).filter { $0.0 == "command" }.map(\.1)
        self.isAttach = uri.prefix { $0 != "?" }.hasSuffix("/attach")
    }

    /// What the program does as soon as it starts.
    mutating func start() -> [Output] {
        guard !isAttach, let program = arguments.first else { return [] }
        switch program {
        case "echo":
            return exit(0, after: [.stdout(Array((arguments.dropFirst().joined(separator: " ") + "\n").utf8))])
        case "cat", "tar", "sh":
            return []  // waits for stdin
        default:
            return exit(127, after: [.stderr(Array("\(program): command not found\n".utf8))])
        }
    }

    mutating func receive(stdin bytes: [UInt8]) -> [Output] {
        guard exitCode == nil else { return [] }
        stdin += bytes
        return arguments.first == "cat" || isAttach ? [.stdout(bytes)] : []
    }

    /// The client closed stdin: the program ends.
    mutating func stdinClosed() -> [Output] {
        exitCode == nil ? exit(0, after: []) : []
    }

    /// What a finished (or abandoned) session leaves for tests to inspect.
    func record(transport: String) -> StandInUpgrades.SessionRecord {
        StandInUpgrades.SessionRecord(command: arguments, stdin: stdin, transport: transport)
    }

    private mutating func exit(_ code: Int, after outputs: [Output]) -> [Output] {
        exitCode = code
        return outputs + [.exit(code)]
    }

    /// The v4/v5 error-stream message for an exit code: a `Status`, with the code as a cause
    /// when it is not zero.
    static func status(exitCode: Int) -> String {
        exitCode == 0
            ? #"{"metadata":{},"status":"Success"}"#
            : #"{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"\#(exitCode)"}]}}"#
    }
}

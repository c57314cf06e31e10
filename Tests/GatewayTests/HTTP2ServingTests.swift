import AsyncHTTPClient
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHPACK
import NIOHTTP2
import NIOPosix
import NIOSSL
import Synchronization
import Testbed
import Testing

@testable import Gateway

@Suite("Serving HTTP/2 streams: flow control, resets, hostile header blocks, draining")
struct HTTP2ServingTests {
    @Test(
        "a stream whose reader stops stalls its own API server response, while the connection's other streams complete")
    func slowReaderStallsOnlyItsStream() async throws {
        try await ProxyHarness.run(.servingTLS) { harness in
            let token = try harness.issuer.mint()
            var (_, stalledBody) = try await harness.openHTTP2Stream("/testbed/endless", token: token)

            // Nobody reads the stream now: the client grants it no window, the proxy stops
            // reading its API server response, and the stand-in stops writing.
            let written = try await Self.stall(harness.api)
            #expect(written < 32 << 20, "the API server wrote \(written >> 20) MB for a stream nobody reads")

            for index in 0..<20 {
                var request = HTTPClientRequest(url: harness.baseURL + "/api/v1/namespaces?n=\(index)")
                request.headers.add(name: "Authorization", value: "Bearer \(token)")
                let response = try await harness.client.execute(request, timeout: .seconds(30))
                #expect(response.status == .ok)
                #expect(
                    String(buffer: try await response.body.collect(upTo: 1 << 20)) == StandInAPIServer.namespaceList)
            }
            #expect(harness.server.openConnections == 1, "the other requests shared the stalled stream's connection")

            // Reading again resumes it: the stall was flow control, not a broken stream. (The
            // client's window is 8 MiB, so what it had buffered is read first.)
            var read = 0
            while harness.api.endlessStreamBytes <= written && read < 256 << 20,
                let chunk = try await stalledBody.next()
            {
                read += chunk.readableBytes
            }
            #expect(harness.api.endlessStreamBytes > written, "the stream did not resume after \(read >> 20) MB read")
        }
    }

    @Test(
        "a 40 KiB request head (HEADERS and CONTINUATION frames, from curl), a connection's first, is served over HTTP/2 as over HTTP/1.1"
    )
    func largeRequestHead() async throws {
        try await ProxyHarness.run(.servingTLS) { harness in
            let large = String(repeating: "g", count: 40 * 1024)
            let token = try harness.issuer.mint()
            // The large head first, on a new connection: curl sends it before it acknowledges
            // the proxy's settings (EarlySettingsAcknowledgement), then a second on the same one.
            let request = { (extra: [String]) in
                ["--http2", "--silent", "--show-error", "--insecure", "--max-time", "20", "--output", "/dev/null"]
                    + ["--write-out", "%{http_code} %{http_version}\n", "--header", "Authorization: Bearer \(token)"]
                    + extra + [harness.baseURL + "/api/v1/namespaces"]
            }
            let curl = Process()
            curl.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
            curl.arguments = request(["--header", "X-Large: \(large)"]) + ["--next"] + request([])
            let output = Pipe()
            let errors = Pipe()
            curl.standardOutput = output
            curl.standardError = errors
            try curl.run()
            let written = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            let complaint = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            curl.waitUntilExit()
            #expect(written == "200 2\n200 2\n", "curl: \(complaint)")
            #expect(harness.api.requests.first?.values("X-Large").map(\.utf8.count) == [large.utf8.count])
            #expect(harness.api.requests.count == 2)
        }
    }

    @Test("a request body larger than the stream window reaches the API server whole")
    func largeRequestBody() async throws {
        try await ProxyHarness.run(.servingTLS) { harness in
            let body = (0..<(1 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31) }
            var request = HTTPClientRequest(url: harness.baseURL + "/api/v1/namespaces/a/configmaps/big")
            request.method = .PUT
            request.headers.add(name: "Authorization", value: "Bearer \(try harness.issuer.mint())")
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: body))
            let response = try await harness.client.execute(request, timeout: .seconds(60))
            #expect(response.version == .http2)
            _ = try await response.body.collect(upTo: 1 << 20)
            let seen = try #require(harness.api.requests.last)
            #expect(seen.method == "PUT")
            #expect(seen.body.count == body.count)
            #expect(seen.body == body)
        }
    }

    @Test("a client resetting its watch stream ends the watch at the API server; the connection serves on")
    func resetEndsTheWatch() async throws {
        try await ProxyHarness.run(.servingTLS) { harness in
            let client = try await RawHTTP2Client.connect(harness)
            let watch = try await client.open(
                harness.requestBlock("/api/v1/namespaces?watch=true", token: try harness.issuer.mint()))
            #expect(try await watch.status() == "200")
            #expect(try await eventually { harness.api.openHeldStreams == 1 })

            watch.reset()
            #expect(try await eventually { harness.api.openHeldStreams == 0 }, "the API server still holds the watch")

            let next = try await client.open(
                harness.requestBlock("/api/v1/namespaces", token: try harness.issuer.mint()))
            #expect(try await next.status() == "200")
            await client.close()
        }
    }

    @Test(
        "a header block whose pseudo-headers would not fit an HTTP/1.1 request line unchanged is reset, and reaches no one",
        arguments: [
            (":path", "/api/v1/namespaces HTTP/1.1\r\nImpersonate-User: admin\r\n\r\nGET /x"),
            (":path", "/api/v1/namespaces\u{0}"),
            (":path", "/api/v1/name spaces"),
            (":path", "api/v1/namespaces"),
            (":path", "https://kubernetes/api/v1/namespaces"),
            (":method", "GET /api/v1/secrets HTTP/1.1\r\nX:"),
            (":method", "GET\t"),
            (":authority", "kubernetes\r\nImpersonate-User: admin"),
        ])
    func hostilePseudoHeaders(name: String, value: String) async throws {
        try await ProxyHarness.run(.servingTLS) { harness in
            let client = try await RawHTTP2Client.connect(harness)
            let token = try harness.issuer.mint()
            var block = harness.requestBlock("/api/v1/namespaces", token: token)
            block.replaceOrAdd(name: name, value: value)
            let hostile = try await client.open(block)
            #expect(try await hostile.status() == nil, "the stream was answered")
            #expect(harness.api.requests.isEmpty, "the request reached the API server")

            // Only that stream was refused: the connection serves the next request.
            let next = try await client.open(harness.requestBlock("/api/v1/namespaces", token: token))
            #expect(try await next.status() == "200")
            #expect(harness.api.requests.count == 1)
            await client.close()
        }
    }

    /// A HEADERS frame ending its stream for each of the client streams numbered `streams`
    /// (stream IDs 1, 3, 5...).
    private static func requests(_ block: HPACKHeaders, streams: Range<Int>) -> [HTTP2Frame] {
        streams.map { index in
            let headers = HTTP2Frame.FramePayload.Headers(headers: block, endStream: true)
            return HTTP2Frame(streamID: HTTP2StreamID(2 * index + 1), payload: .headers(headers))
        }
    }

    /// Runs `body` with a proxy serving TLS and a client in frames that sends any header block
    /// it is given, unchecked.
    private static func withUncheckedClient(
        _ body: (ProxyHarness, FrameLevelHTTP2Client) async throws -> Void
    ) async throws {
        try await ProxyHarness.run(.servingTLS) { harness in
            let client = try await FrameLevelHTTP2Client.connect(
                harness, settings: nioDefaultSettings, checkingHeaderBlocks: false)
            try await body(harness, client)
            await client.close()
        }
    }

    /// Header blocks that break one of RFC 9113's rules for a request (§8.2, §8.3), each a
    /// change to a good GET's block.
    enum MalformedBlock: String, CaseIterable, Sendable {
        case carriageReturnInValue, lineFeedInValue, nulInValue
        case upperCaseName, spaceInName, emptyName, colonInName
        case connection, keepAlive, proxyConnection, transferEncoding, upgrade, teOtherThanTrailers
        case pseudoHeaderAfterField, unknownPseudoHeader, statusInRequest, protocolPseudoHeader
        case repeatedPath, repeatedMethod, noScheme, noPath, noMethod, emptyPath, spaceInScheme
        case connectWithPath, connectWithoutAuthority

        func block(port: Int, token: String) -> HPACKHeaders {
            var pseudo = [(":method", "GET"), (":scheme", "https"), (":path", "/api/v1/namespaces")]
            pseudo.append((":authority", "127.0.0.1:\(port)"))
            var fields = [("authorization", "Bearer \(token)")]
            switch self {
            case .carriageReturnInValue: fields.append(("x-note", "a\rImpersonate-User: admin"))
            case .lineFeedInValue: fields.append(("x-note", "a\nImpersonate-User: admin"))
            case .nulInValue: fields.append(("x-note", "a\u{0}b"))
            case .upperCaseName: fields.append(("Impersonate-User", "admin"))
            case .spaceInName: fields.append(("impersonate-user ", "admin"))
            case .emptyName: fields.append(("", "admin"))
            case .colonInName: fields.append(("x:y", "z"))
            case .connection: fields.append(("connection", "close"))
            case .keepAlive: fields.append(("keep-alive", "timeout=5"))
            case .proxyConnection: fields.append(("proxy-connection", "keep-alive"))
            case .transferEncoding: fields.append(("transfer-encoding", "chunked"))
            case .upgrade: fields.append(("upgrade", "websocket"))
            case .teOtherThanTrailers: fields.append(("te", "gzip"))
            case .pseudoHeaderAfterField: fields.append(pseudo.removeLast())
            case .unknownPseudoHeader: pseudo.append((":user", "admin"))
            case .statusInRequest: pseudo.append((":status", "200"))
            case .protocolPseudoHeader: pseudo.append((":protocol", "websocket"))
            case .repeatedPath: pseudo.append((":path", "/api/v1/secrets"))
            case .repeatedMethod: pseudo.append((":method", "DELETE"))
            case .noScheme: pseudo.remove(at: 1)
            case .noPath: pseudo.remove(at: 2)
            case .noMethod: pseudo.remove(at: 0)
            case .emptyPath: pseudo[2].1 = ""
            case .spaceInScheme: pseudo[1].1 = "ht tps"
            case .connectWithPath: pseudo[0].1 = "CONNECT"
            case .connectWithoutAuthority: pseudo = [(":method", "CONNECT")]
            }
            return HPACKHeaders(pseudo + fields)
        }
    }

    @Test(
        "a header block that breaks RFC 9113's rules for a request is reset, reaches no one, and the connection serves on",
        arguments: MalformedBlock.allCases.filter { $0 != .emptyName })
    func malformedBlock(_ malformed: MalformedBlock) async throws {
        try await Self.withUncheckedClient { harness, client in
            let token = try harness.issuer.mint()
            let good = harness.requestBlock("/api/v1/namespaces", token: token)
            try await client.sendBatch(
                Self.requests(malformed.block(port: harness.port, token: token), streams: 0..<1)
                    + Self.requests(good, streams: 1..<2))
            #expect(try await eventually { client.resets(1) == [.protocolError] }, "\(client.frames)")
            #expect(client.status(1) == nil, "the stream was answered")
            // Only that stream was refused: the connection serves the next request.
            #expect(try await eventually { client.status(3) == "200" }, "\(client.frames)")
            #expect(harness.api.requests.map(\.path) == ["/api/v1/namespaces"])
        }
    }

    @Test("a field with an empty name ends the connection: NIO's HPACK decoder takes it for a COMPRESSION_ERROR")
    func emptyFieldName() async throws {
        try await Self.withUncheckedClient { harness, client in
            let block = MalformedBlock.emptyName.block(port: harness.port, token: try harness.issuer.mint())
            try await client.sendBatch(Self.requests(block, streams: 0..<1))
            #expect(try await eventually { client.receivedGoAway(.compressionError) }, "\(client.frames)")
            #expect(try await eventually { !client.channel.isActive }, "the connection stayed open")
            #expect(harness.api.requests.isEmpty)
        }
    }

    /// Every rule, on the translation itself (the empty name included).
    @Test("each malformed header block makes no request head", arguments: MalformedBlock.allCases)
    func malformedBlockMakesNoHead(_ malformed: MalformedBlock) throws {
        let block = malformed.block(port: 443, token: "t")
        #expect(HTTP2StreamsHandler.requestHead(block, endStream: true) == nil)
        #expect(HTTP2StreamsHandler.requestHead(block, endStream: false) == nil)
        // The block each one changes makes one.
        let good: HPACKHeaders = [
            ":method": "GET", ":scheme": "https", ":path": "/api/v1/namespaces", ":authority": "127.0.0.1:443",
            "authorization": "Bearer t",
        ]
        #expect(HTTP2StreamsHandler.requestHead(good, endStream: true)?.uri == "/api/v1/namespaces")
    }

    @Test("what RFC 9113 allows in a request's block is served: te: trailers, CONNECT's authority alone (refused 405)")
    func allowedBlocks() async throws {
        try await Self.withUncheckedClient { harness, client in
            let token = try harness.issuer.mint()
            var block = harness.requestBlock("/api/v1/namespaces", token: token)
            block.add(name: "te", value: "trailers")
            block.add(name: "x-tab", value: "a\tb\u{80}")
            let connect: HPACKHeaders = [
                ":method": "CONNECT", ":authority": "kubernetes:443", "authorization": "Bearer \(token)",
            ]
            try await client.sendBatch(Self.requests(block, streams: 0..<1) + Self.requests(connect, streams: 1..<2))
            #expect(try await eventually { client.status(1) == "200" }, "\(client.frames)")
            #expect(try await eventually { client.status(3) == "405" }, "\(client.frames)")
            #expect(harness.api.requests.count == 1)
            #expect(harness.api.requests.last?.values("x-tab") == ["a\tb\u{80}"])
        }
    }

    @Test("trailers that break RFC 9113's rules reset their stream, and its chunked body never ends at the API server")
    func malformedTrailers() async throws {
        try await Self.withUncheckedClient { harness, client in
            let token = try harness.issuer.mint()
            let block = harness.requestBlock("/api/v1/namespaces/a/configmaps", token: token, method: "POST")
            let id = HTTP2StreamID(1)
            try await client.sendBatch([
                HTTP2Frame(streamID: id, payload: .headers(.init(headers: block, endStream: false))),
                HTTP2Frame(streamID: id, payload: .data(.init(data: .byteBuffer(ByteBuffer(string: "{}"))))),
                HTTP2Frame(
                    streamID: id, payload: .headers(.init(headers: [":path": "/api/v1/secrets"], endStream: true))),
            ])
            #expect(try await eventually { client.resets(id) == [.protocolError] }, "\(client.frames)")
            #expect(!client.receivedHeaders, "the request was answered")
            // The body went upstream chunked and unfinished: the exchange ends (its access-log
            // line) with the connection carrying it closed, and the API server took nothing.
            #expect(try await eventually { !harness.logs.accessLines.isEmpty }, "the exchange did not end")
            try await Task.sleep(for: .milliseconds(100))
            #expect(harness.api.requests.isEmpty, "the API server took a request")
        }
    }

    @Test("a connection sending more malformed header blocks than NIO allows stream errors is sent GOAWAY, cut off")
    func malformedBlockFlood() async throws {
        try await Self.withUncheckedClient { harness, client in
            let block = MalformedBlock.upperCaseName.block(port: harness.port, token: try harness.issuer.mint())
            // In rounds below the 100 concurrent streams allowed, each round reset before the next.
            for round in 0...(HTTP2StreamsHandler.maximumRefusedBlocks / 50) {
                try? await client.sendBatch(Self.requests(block, streams: 50 * round..<50 * round + 50))
                try await client.waitForResets(50 * round + 50)
            }
            #expect(try await eventually { client.receivedGoAway(.enhanceYourCalm) }, "no GOAWAY(ENHANCE_YOUR_CALM)")
            #expect(try await eventually { !client.channel.isActive }, "the connection stayed open")
            #expect(harness.api.requests.isEmpty)
            #expect(try await harness.get("/version", token: try harness.issuer.mint()).status == 200)
        }
    }

    @Test("a client that opens a stream's window but never its connection's stalls that stream's API server response")
    func connectionWindowBoundsBuffering() async throws {
        try await ProxyHarness.run(.servingTLS) { harness in
            let client = try await FrameLevelHTTP2Client.connect(
                harness, settings: [HTTP2Setting(parameter: .initialWindowSize, value: (1 << 31) - 1)])
            let block = harness.requestBlock("/testbed/endless", token: try harness.issuer.mint())
            try await client.send(HTTP2Frame(streamID: 1, payload: .headers(.init(headers: block, endStream: true))))
            // The client reads everything, so TCP never pushes back: only the connection's
            // 64 KiB window can stop the proxy from reading the API server's endless answer.
            let written = try await Self.stall(harness.api)
            #expect(written < 32 << 20, "the API server wrote \(written >> 20) MB into a 64 KiB window")
            #expect(client.frames.contains { if case .headers = $0.payload { true } else { false } })

            // Opening the connection's window lets the stream go on.
            try await client.send(HTTP2Frame(streamID: 0, payload: .windowUpdate(windowSizeIncrement: 16 << 20)))
            #expect(try await eventually { harness.api.endlessStreamBytes > written }, "the stream did not resume")
            await client.close()
        }
    }

    @Test("a complete response to a request whose body is still coming stops the upload (RST_STREAM NO_ERROR)")
    func responseBeforeBodyStopsUpload() async throws {
        try await ProxyHarness.run(.servingTLS) { harness in
            let client = try await FrameLevelHTTP2Client.connect(harness, settings: nioDefaultSettings)
            let block = harness.requestBlock("/api/v1/namespaces/a/configmaps", token: "not-a-token", method: "POST")
            try await client.send(HTTP2Frame(streamID: 1, payload: .headers(.init(headers: block))))
            // The answer may come (and close the stream) before this first part of the body.
            let chunk = HTTP2Frame(streamID: 1, payload: .data(.init(data: .byteBuffer(ByteBuffer(string: "{")))))
            try? await client.send(chunk)
            #expect(
                try await eventually {
                    client.frames.contains { frame in
                        if case .rstStream(.noError) = frame.payload { return frame.streamID == 1 }
                        return false
                    }
                }, "no RST_STREAM(NO_ERROR) after the 401")
            let status = client.frames.lazy.compactMap { frame -> String? in
                if case .headers(let headers) = frame.payload { return headers.headers.first(name: ":status") }
                return nil
            }.first
            #expect(status == "401")
            #expect(harness.api.requests.isEmpty)
            await client.close()
        }
    }

    @Test("an HTTP/2 client waiting for 100 Continue gets the API server's as a HEADERS frame, then the answer")
    func expectContinue() async throws {
        try await ProxyHarness.run(.servingTLS) { harness in
            let client = try await FrameLevelHTTP2Client.connect(harness, settings: nioDefaultSettings)
            let body = #"{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"b"}}"#
            var block = harness.requestBlock(
                "/api/v1/namespaces/a/configmaps/b", token: try harness.issuer.mint(), method: "PUT")
            block.add(name: "expect", value: "100-continue")
            block.add(name: "content-length", value: String(body.utf8.count))
            try await client.send(HTTP2Frame(streamID: 1, payload: .headers(.init(headers: block))))
            func statuses() -> [String] {
                client.frames.compactMap { frame in
                    guard frame.streamID == 1, case .headers(let headers) = frame.payload else { return nil }
                    return headers.headers.first(name: ":status")
                }
            }
            #expect(try await eventually { statuses() == ["100"] }, "\(statuses())")
            let data = HTTP2Frame.FramePayload.Data(data: .byteBuffer(ByteBuffer(string: body)), endStream: true)
            try await client.send(HTTP2Frame(streamID: 1, payload: .data(data)))
            #expect(try await eventually { statuses() == ["100", "200"] }, "\(statuses())")
            #expect(harness.api.requests.last.map { String(decoding: $0.body, as: UTF8.self) } == body)
            await client.close()
        }
    }

    @Test(
        "a client resetting streams as fast as it opens them (rapid reset, CVE-2023-44487), or sending what is not a frame, is sent GOAWAY and cut off"
    )
    func rapidReset() async throws {
        try await ProxyHarness.run(.servingTLS) { harness in
            let client = try await FrameLevelHTTP2Client.connect(harness, settings: nioDefaultSettings)
            let block = harness.requestBlock("/api/v1/namespaces", token: try harness.issuer.mint())
            var frames: [HTTP2Frame] = []
            for index in 0..<400 {
                let id = HTTP2StreamID(2 * index + 1)
                frames.append(HTTP2Frame(streamID: id, payload: .headers(.init(headers: block, endStream: true))))
                frames.append(HTTP2Frame(streamID: id, payload: .rstStream(.cancel)))
            }
            // Cut off part way, the client may see its own later writes fail.
            try? await client.sendBatch(frames)
            #expect(
                try await eventually { client.receivedGoAway(.enhanceYourCalm) }, "no GOAWAY(ENHANCE_YOUR_CALM)")
            #expect(try await eventually { !client.channel.isActive }, "the connection stayed open")
            // NIO allows 200 resets in 30 s; each stream reached the API server at most once.
            #expect(harness.api.requests.count <= 200)

            // Bytes that are not a frame (a SETTINGS frame 5 bytes long) end a connection too.
            let garbling = try await FrameLevelHTTP2Client.connect(harness, settings: nioDefaultSettings)
            try await garbling.sendRaw([0, 0, 5, 0x04, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5])
            #expect(try await eventually { !garbling.channel.isActive }, "the connection stayed open")

            // Other clients are served on.
            let response = try await harness.get("/version", token: try harness.issuer.mint())
            #expect(response.status == 200)
        }
    }

    @Test(
        "a connection error of any kind (a SETTINGS value or a window out of range) is answered GOAWAY and the connection closed"
    )
    func connectionErrorsClose() async throws {
        try await ProxyHarness.run(.servingTLS) { harness in
            // SETTINGS_ENABLE_PUSH = 2: PROTOCOL_ERROR. A WINDOW_UPDATE taking the connection's
            // window past 2^31-1: FLOW_CONTROL_ERROR.
            let cases: [(bytes: [UInt8], code: HTTP2ErrorCode)] = [
                ([0, 0, 6, 0x04, 0, 0, 0, 0, 0, 0, 0x02, 0, 0, 0, 2], .protocolError),
                ([0, 0, 4, 0x08, 0, 0, 0, 0, 0, 0x7F, 0xFF, 0xFF, 0xFF], .flowControlError),
            ]
            for (bytes, code) in cases {
                let client = try await FrameLevelHTTP2Client.connect(harness, settings: nioDefaultSettings)
                try await client.sendRaw(bytes)
                #expect(
                    try await eventually { client.receivedGoAway(code) }, "no GOAWAY(\(code))")
                // Not the 60 s a connection without streams is given.
                #expect(
                    try await eventually(timeout: .seconds(5)) { !client.channel.isActive },
                    "the connection stayed open")
                await client.close()
            }
            let response = try await harness.get("/version", token: try harness.issuer.mint())
            #expect(response.status == 200)
        }
    }

    @Test("a connection error after a drain's GOAWAY (NIO cannot send its own) still closes the connection")
    func connectionErrorWhileDraining() async throws {
        try await ProxyHarness.run(.servingTLS) { harness in
            let client = try await FrameLevelHTTP2Client.connect(harness, settings: nioDefaultSettings)
            let block = harness.requestBlock("/api/v1/namespaces?watch=true", token: try harness.issuer.mint())
            try await client.send(HTTP2Frame(streamID: 1, payload: .headers(.init(headers: block, endStream: true))))
            #expect(try await eventually { harness.api.openHeldStreams == 1 })
            let server = harness.server
            let draining = Task { await server.drain(deadline: .seconds(20)) }
            #expect(
                try await eventually { client.receivedGoAway(.noError) }, "no GOAWAY for the drain")
            try await client.sendRaw([0, 0, 6, 0x04, 0, 0, 0, 0, 0, 0, 0x02, 0, 0, 0, 2])
            #expect(
                try await eventually(timeout: .seconds(5)) { !client.channel.isActive },
                "the connection stayed open until its watch ended")
            harness.api.releaseWatches()
            _ = await draining.value
        }
    }

    @Test("a 204 from the API server that gives a Content-Length reaches an HTTP/2 client as a 204, not a reset")
    func noContentWithContentLength() async throws {
        // Go's server keeps a Content-Length a handler sets on a 204; NIO's HTTP/1.1 decoder
        // reads no body after it, and NIO's HTTP/2 handler refused to end a stream that
        // announced 5 bytes with none.
        let authority = try TestCertificateAuthority(commonName: "raw upstream CA")
        let upstream = try await RawTLSResponder.start(
            identity: try authority.issueServerCertificate(),
            response: "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\nX-Answered-By: raw\r\n\r\n")
        var options = ProxyHarness.Options.servingTLS
        options.upstreamPort = upstream.port
        options.upstreamCAPEM = authority.certificatePEM
        try await ProxyHarness.run(options) { harness in
            for _ in 0..<2 {
                var request = HTTPClientRequest(url: harness.baseURL + "/api/v1/namespaces/a/configmaps/b")
                request.method = .DELETE
                request.headers.add(name: "Authorization", value: "Bearer \(try harness.issuer.mint())")
                let response = try await harness.client.execute(request, timeout: .seconds(30))
                #expect(response.version == .http2)
                #expect(response.status == .noContent)
                #expect(response.headers["x-answered-by"] == ["raw"])
                #expect(response.headers["content-length"].isEmpty)
                #expect(try await response.body.collect(upTo: 1024).readableBytes == 0)
            }
        }
        await upstream.stop()
    }

    @Test("a drain closes an idle HTTP/2 connection with GOAWAY, and lets a watch in progress finish first")
    func drain() async throws {
        try await ProxyHarness.run(.servingTLS) { harness in
            let idle = try await RawHTTP2Client.connect(harness)
            let token = try harness.issuer.mint()
            #expect(try await idle.open(harness.requestBlock("/api/v1/namespaces", token: token)).status() == "200")
            let busy = try await RawHTTP2Client.connect(harness)
            let watch = try await busy.open(harness.requestBlock("/api/v1/namespaces?watch=true", token: token))
            #expect(try await watch.status() == "200")

            let outcome = NIOLockedValueBox<Bool?>(nil)
            let server = harness.server
            let draining = Task {
                let drained = await server.drain(deadline: .seconds(20))
                outcome.withLockedValue { $0 = drained }
            }
            #expect(try await eventually { idle.isClosed }, "the idle connection stayed open")
            #expect(idle.goAwayReceived)
            #expect(!busy.isClosed, "the connection with a watch in progress closed")
            #expect(outcome.withLockedValue { $0 } == nil)

            harness.api.releaseWatches()
            let rest = try await watch.body()
            #expect(rest.contains("MODIFIED"), "the watch did not finish: \(rest)")
            await draining.value
            #expect(outcome.withLockedValue { $0 } == true, "the drain did not complete")
            // The drain ends when the proxy has closed its end; the client hears of it after.
            #expect(try await eventually { busy.isClosed }, "the connection stayed open")
        }
    }

    /// Waits until the stand-in's endless stream has written nothing for a second, and returns
    /// what it had written (a minute at most, which fails the test).
    private static func stall(_ api: StandInAPIServer) async throws -> Int {
        var last = -1
        var unchangedSince = ContinuousClock.now
        let deadline = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < deadline && ContinuousClock.now - unchangedSince < .seconds(1) {
            let written = api.endlessStreamBytes
            if written != last {
                last = written
                unchangedSince = .now
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(ContinuousClock.now - unchangedSince >= .seconds(1), "the API server never stopped writing")
        return last
    }
}

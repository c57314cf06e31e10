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
        "a 40 KiB request head (HEADERS and CONTINUATION frames, from curl) is served over HTTP/2 as over HTTP/1.1, where the limit is 64 KiB"
    )
    func largeRequestHead() async throws {
        try await ProxyHarness.run(.servingTLS) { harness in
            let large = String(repeating: "g", count: 40 * 1024)
            let token = try harness.issuer.mint()
            // Two requests on one connection: NIO applies the larger limit once the client has
            // acknowledged the settings, which it does before its second request.
            let request = { (extra: [String]) in
                ["--http2", "--silent", "--show-error", "--insecure", "--max-time", "20", "--output", "/dev/null"]
                    + ["--write-out", "%{http_code} %{http_version}\n", "--header", "Authorization: Bearer \(token)"]
                    + extra + [harness.baseURL + "/api/v1/namespaces"]
            }
            let curl = Process()
            curl.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
            curl.arguments = request([]) + ["--next"] + request(["--header", "X-Large: \(large)"])
            let output = Pipe()
            let errors = Pipe()
            curl.standardOutput = output
            curl.standardError = errors
            try curl.run()
            let written = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            let complaint = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            curl.waitUntilExit()
            #expect(written == "200 2\n200 2\n", "curl: \(complaint)")
            #expect(harness.api.requests.last?.values("X-Large").map(\.utf8.count) == [large.utf8.count])
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
        try await ProxyHarness.run(.servingTLS) { harness in
            let client = try await FrameLevelHTTP2Client.connect(
                harness, settings: nioDefaultSettings, checkingHeaderBlocks: false)
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
            await client.close()
        }
    }

    @Test("a field with an empty name ends the connection: NIO's HPACK decoder takes it for a COMPRESSION_ERROR")
    func emptyFieldName() async throws {
        try await ProxyHarness.run(.servingTLS) { harness in
            let client = try await FrameLevelHTTP2Client.connect(
                harness, settings: nioDefaultSettings, checkingHeaderBlocks: false)
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
        try await ProxyHarness.run(.servingTLS) { harness in
            let client = try await FrameLevelHTTP2Client.connect(
                harness, settings: nioDefaultSettings, checkingHeaderBlocks: false)
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
            await client.close()
        }
    }

    @Test("trailers that break RFC 9113's rules reset their stream, and its chunked body never ends at the API server")
    func malformedTrailers() async throws {
        try await ProxyHarness.run(.servingTLS) { harness in
            let client = try await FrameLevelHTTP2Client.connect(
                harness, settings: nioDefaultSettings, checkingHeaderBlocks: false)
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
            // The body went upstream chunked and unfinished; the connection carrying it closed.
            try await Task.sleep(for: .milliseconds(200))
            #expect(harness.api.requests.isEmpty, "the API server took a request")
            await client.close()
        }
    }

    @Test("a connection sending more malformed header blocks than NIO allows stream errors is sent GOAWAY, cut off")
    func malformedBlockFlood() async throws {
        try await ProxyHarness.run(.servingTLS) { harness in
            let client = try await FrameLevelHTTP2Client.connect(
                harness, settings: nioDefaultSettings, checkingHeaderBlocks: false)
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
            #expect(busy.isClosed)
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

extension ProxyHarness {
    /// TLS for a client of the proxy's HTTPS listener that offers only h2.
    fileprivate func http2ClientTLS() throws -> NIOSSLContext {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.trustRoots = .certificates(
            try NIOSSLCertificate.fromPEMBytes(Array(try #require(serving).authority.certificatePEM.utf8)))
        tls.certificateVerification = .noHostnameVerification
        tls.applicationProtocols = ["h2"]
        return try NIOSSLContext(configuration: tls)
    }

    /// A request's header block (a GET's unless told), as an HTTP/2 client sends it.
    fileprivate func requestBlock(_ path: String, token: String, method: String = "GET") -> HPACKHeaders {
        [
            ":method": method, ":scheme": "https", ":path": path, ":authority": "127.0.0.1:\(port)",
            "authorization": "Bearer \(token)",
        ]
    }
}

/// An HTTP/2 client over TLS that sends the header blocks it is given, unchecked (NIO's own
/// checks are off on this side), one stream per request, and records what comes back.
final class RawHTTP2Client: Sendable {
    private let channel: any Channel
    private let multiplexer: NIOHTTP2Handler.StreamMultiplexer
    private let state: NIOLockedValueBox<(closed: Bool, goAway: Bool)>

    private init(
        channel: any Channel, multiplexer: NIOHTTP2Handler.StreamMultiplexer,
        state: NIOLockedValueBox<(closed: Bool, goAway: Bool)>
    ) {
        self.channel = channel
        self.multiplexer = multiplexer
        self.state = state
    }

    var isClosed: Bool { state.withLockedValue { $0.closed } }
    var goAwayReceived: Bool { state.withLockedValue { $0.goAway } }

    static func connect(_ harness: ProxyHarness) async throws -> RawHTTP2Client {
        let context = try harness.http2ClientTLS()
        let state = NIOLockedValueBox((closed: false, goAway: false))
        let (channel, multiplexer) = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        NIOSSLClientHandler(context: context, serverHostname: nil))
                }
            }
            .connect(host: "127.0.0.1", port: harness.port)
            .flatMap { channel in
                channel.eventLoop.makeCompletedFuture {
                    var configuration = NIOHTTP2Handler.ConnectionConfiguration()
                    configuration.headerBlockValidation = .disabled
                    let multiplexer = try channel.pipeline.syncOperations.configureHTTP2Pipeline(
                        mode: .client, connectionConfiguration: configuration, streamConfiguration: .init()
                    ) { stream in stream.eventLoop.makeSucceededVoidFuture() }
                    try channel.pipeline.syncOperations.addHandler(GoAwayWatcher(state: state))
                    channel.closeFuture.whenComplete { _ in state.withLockedValue { $0.closed = true } }
                    return (channel, multiplexer)
                }
            }.get()
        return RawHTTP2Client(channel: channel, multiplexer: multiplexer, state: state)
    }

    /// Opens a stream and sends `block`, then `body` in a DATA frame if there is one, as its
    /// complete request.
    func open(_ block: HPACKHeaders, body: [UInt8] = []) async throws -> RawHTTP2Stream {
        let recorder = StreamRecorder()
        let stream = try await multiplexer.createStreamChannel { stream in
            stream.eventLoop.makeCompletedFuture { try stream.pipeline.syncOperations.addHandler(recorder) }
        }.get()
        try await stream.writeAndFlush(HTTP2Frame.FramePayload.headers(.init(headers: block, endStream: body.isEmpty)))
        if !body.isEmpty {
            let data = HTTP2Frame.FramePayload.Data(data: .byteBuffer(ByteBuffer(bytes: body)), endStream: true)
            try await stream.writeAndFlush(HTTP2Frame.FramePayload.data(data))
        }
        return RawHTTP2Stream(channel: stream, recorder: recorder)
    }

    func close() async {
        try? await channel.close()
    }
}

/// One stream of a `RawHTTP2Client`.
struct RawHTTP2Stream: Sendable {
    let channel: any Channel
    fileprivate let recorder: StreamRecorder

    /// The response's `:status`, or nil when the stream ended (reset) without one.
    func status() async throws -> String? {
        try await recorder.head.futureResult.get()
    }

    /// The response body, once the stream ends.
    func body() async throws -> String {
        try await recorder.ended.futureResult.get()
        return String(decoding: recorder.bodyBytes, as: UTF8.self)
    }

    /// Resets the stream (RST_STREAM CANCEL), as a client cancelling a request does.
    func reset() {
        channel.close(promise: nil)
    }
}

private final class StreamRecorder: ChannelInboundHandler, Sendable {
    typealias InboundIn = HTTP2Frame.FramePayload
    let head: EventLoopPromise<String?>
    let ended: EventLoopPromise<Void>
    private let body = NIOLockedValueBox<[UInt8]>([])
    /// Whether `head` and `ended` are complete (each is completed once).
    private let completed = NIOLockedValueBox((head: false, ended: false))

    init() {
        let loop = MultiThreadedEventLoopGroup.singleton.any()
        head = loop.makePromise()
        ended = loop.makePromise()
    }

    var bodyBytes: [UInt8] { body.withLockedValue { $0 } }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .headers(let headers):
            answerHead(headers.headers.first(name: ":status"))
            if headers.endStream { end() }
        case .data(let data):
            if case .byteBuffer(let buffer) = data.data {
                body.withLockedValue { $0 += Array(buffer.readableBytesView) }
            }
            if data.endStream { end() }
        default:
            break
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        answerHead(nil)
        end()
        context.fireChannelInactive()
    }

    /// A stream whose HEADERS could not be sent is removed without going inactive.
    func handlerRemoved(context: ChannelHandlerContext) {
        answerHead(nil)
        end()
    }

    /// One never added to a stream (the connection had closed): a failed test, not a crash of
    /// every test in the process.
    deinit {
        answerHead(nil)
        end()
    }

    private func answerHead(_ status: String?) {
        let first = completed.withLockedValue { state in
            defer { state.head = true }
            return !state.head
        }
        if first { head.succeed(status) }
    }

    private func end() {
        let first = completed.withLockedValue { state in
            defer { state.ended = true }
            return !state.ended
        }
        if first { ended.succeed() }
    }
}

private final class GoAwayWatcher: ChannelInboundHandler, Sendable {
    typealias InboundIn = HTTP2Frame
    private let state: NIOLockedValueBox<(closed: Bool, goAway: Bool)>

    init(state: NIOLockedValueBox<(closed: Bool, goAway: Bool)>) {
        self.state = state
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .goAway = unwrapInboundIn(data).payload { state.withLockedValue { $0.goAway = true } }
    }
}

/// An HTTP/2 client working in frames, with no flow-control help from NIO: it sends what it is
/// told and grants only the window it is told to grant.
final class FrameLevelHTTP2Client: Sendable {
    let channel: any Channel
    private let received: NIOLockedValueBox<[HTTP2Frame]>

    private init(channel: any Channel, received: NIOLockedValueBox<[HTTP2Frame]>) {
        self.channel = channel
        self.received = received
    }

    var frames: [HTTP2Frame] { received.withLockedValue { $0 } }

    /// Whether a GOAWAY with `code` has arrived.
    func receivedGoAway(_ code: HTTP2ErrorCode) -> Bool {
        frames.contains { frame in
            if case .goAway(_, code, _) = frame.payload { return true }
            return false
        }
    }

    /// The error codes of the RST_STREAM frames received for `id`.
    func resets(_ id: HTTP2StreamID) -> [HTTP2ErrorCode] {
        frames.compactMap { frame in
            guard frame.streamID == id, case .rstStream(let code) = frame.payload else { return nil }
            return code
        }
    }

    /// Waits until `count` streams have been reset, or the connection has closed.
    func waitForResets(_ count: Int) async throws {
        let done = try await eventually(timeout: .seconds(5)) { !channel.isActive || resetCount >= count }
        #expect(done, "\(resetCount) streams reset of \(count)")
    }

    /// RST_STREAM frames received, for any stream.
    var resetCount: Int {
        frames.filter { frame in
            guard case .rstStream = frame.payload else { return false }
            return true
        }.count
    }

    /// The `:status` of the response HEADERS received for `id`, if one has arrived.
    func status(_ id: HTTP2StreamID) -> String? {
        frames.lazy.compactMap { frame -> String? in
            guard frame.streamID == id, case .headers(let headers) = frame.payload else { return nil }
            return headers.headers.first(name: ":status")
        }.first
    }

    /// Whether a HEADERS frame (a response) has arrived.
    var receivedHeaders: Bool {
        frames.contains { frame in
            guard case .headers = frame.payload else { return false }
            return true
        }
    }

    /// - Parameter checkingHeaderBlocks: false sends header blocks NIO would refuse to send.
    static func connect(
        _ harness: ProxyHarness, settings: HTTP2Settings, checkingHeaderBlocks: Bool = true
    ) async throws -> FrameLevelHTTP2Client {
        let context = try harness.http2ClientTLS()
        let received = NIOLockedValueBox<[HTTP2Frame]>([])
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let pipeline = channel.pipeline.syncOperations
                    try pipeline.addHandler(NIOSSLClientHandler(context: context, serverHostname: nil))
                    var connection = NIOHTTP2Handler.ConnectionConfiguration()
                    connection.initialSettings = settings
                    connection.headerBlockValidation = checkingHeaderBlocks ? .enabled : .disabled
                    // The server's resets are what the tests count: this side does not give up on
                    // the connection after NIO's 200.
                    var streams = NIOHTTP2Handler.StreamConfiguration()
                    streams.streamResetFrameRateLimit.maximumCount = 10_000
                    try pipeline.addHandler(
                        NIOHTTP2Handler(
                            mode: .client, connectionConfiguration: connection, streamConfiguration: streams))
                    try pipeline.addHandler(FrameRecorder(received: received))
                }
            }
            .connect(host: "127.0.0.1", port: harness.port).get()
        return FrameLevelHTTP2Client(channel: channel, received: received)
    }

    func send(_ frame: HTTP2Frame) async throws {
        try await channel.writeAndFlush(frame)
    }

    /// Writes `bytes` under the HTTP/2 handler, straight into the TLS connection.
    func sendRaw(_ bytes: [UInt8]) async throws {
        let channel = self.channel
        try await channel.eventLoop.flatSubmit {
            do {
                let context = try channel.pipeline.syncOperations.context(handlerType: NIOHTTP2Handler.self)
                return context.writeAndFlush(NIOAny(ByteBuffer(bytes: bytes)))
            } catch {
                return channel.eventLoop.makeFailedFuture(error)
            }
        }.get()
    }

    /// Writes all of `frames` and flushes once: they leave in as few TLS records as fit.
    func sendBatch(_ frames: [HTTP2Frame]) async throws {
        let channel = self.channel
        try await channel.eventLoop.flatSubmit {
            let written = frames.map { channel.write($0) }
            channel.flush()
            return EventLoopFuture.andAllSucceed(written, on: channel.eventLoop)
        }.get()
    }

    func close() async {
        try? await channel.close()
    }
}

private final class FrameRecorder: ChannelInboundHandler, Sendable {
    typealias InboundIn = HTTP2Frame
    private let received: NIOLockedValueBox<[HTTP2Frame]>

    init(received: NIOLockedValueBox<[HTTP2Frame]>) {
        self.received = received
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var frame = unwrapInboundIn(data)
        // Bodies are counted, not kept.
        if case .data(var data) = frame.payload, case .byteBuffer(let buffer) = data.data {
            data.data = .byteBuffer(ByteBuffer(repeating: 0, count: min(buffer.readableBytes, 1)))
            frame.payload = .data(data)
        }
        received.withLockedValue { $0.append(frame) }
    }
}

/// A TLS server on loopback that answers every request head it reads with the same bytes,
/// written as they are: for what NIO's HTTP/1.1 encoder would not send. With `closing`, it
/// closes the connection right after the answer, in the same write.
final class RawTLSResponder: Sendable {
    private let channel: any Channel
    let port: Int

    private init(channel: any Channel) {
        self.channel = channel
        self.port = channel.localAddress?.port ?? 0
    }

    static func start(identity: ServerIdentity, response: String, closing: Bool = false) async throws
        -> RawTLSResponder
    {
        let context = try NIOSSLContext(configuration: identity.serverTLSConfiguration())
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: context))
                    try channel.pipeline.syncOperations.addHandler(Responder(response: response, closing: closing))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        return RawTLSResponder(channel: channel)
    }

    func stop() async {
        try? await channel.close()
    }

    private final class Responder: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        private let response: String
        private let closing: Bool
        private var received: [UInt8] = []

        init(response: String, closing: Bool) {
            self.response = response
            self.closing = closing
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            received += unwrapInboundIn(data).readableBytesView
            let endOfHead = Array("\r\n\r\n".utf8)
            while let end = received.firstRange(of: endOfHead) {
                received.removeSubrange(..<end.upperBound)
                context.write(wrapOutboundOut(ByteBuffer(string: response)), promise: nil)
                if closing {
                    context.flush()
                    context.close(promise: nil)
                    return
                }
            }
        }

        func channelReadComplete(context: ChannelHandlerContext) {
            context.flush()
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            context.close(promise: nil)
        }
    }
}

import CZlib

/// SPDY/3 header blocks are zlib streams primed with a fixed dictionary (SPDY/3 draft, 2.6.10.1).
/// Each direction of a connection has one compression context that lives as long as the
/// connection: every header block continues the stream and ends with a sync flush.
enum SPDYHeaderDictionary {
    /// Length-prefixed header names and values the draft lists first…
    private static let words = [
        "options", "head", "post", "put", "delete", "trace", "accept", "accept-charset", "accept-encoding",
        "accept-language", "accept-ranges", "age", "allow", "authorization", "cache-control", "connection",
        "content-base", "content-encoding", "content-language", "content-length", "content-location", "content-md5",
        "content-range", "content-type", "date", "etag", "expect", "expires", "from", "host", "if-match",
        "if-modified-since", "if-none-match", "if-range", "if-unmodified-since", "last-modified", "location",
        "max-forwards", "pragma", "proxy-authenticate", "proxy-authorization", "range", "referer", "retry-after",
        "server", "te", "trailer", "transfer-encoding", "upgrade", "user-agent", "vary", "via", "warning",
        "www-authenticate", "method", "get", "status", "200 OK", "version", "HTTP/1.1", "url", "public",
        "set-cookie", "keep-alive", "origin",
    ]

    /// …then common value fragments as plain text, without prefixes.
    private static let fragments =
        "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
        + "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request"
        + "401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented"
        + "503 Service Unavailable"
        + "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT"
        + "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,"
        + "text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0."

    /// The dictionary's bytes (1423 of them; zlib names it by its Adler-32, 0xe3c6a7c2).
    static let bytes: [UInt8] = {
        var bytes: [UInt8] = []
        for word in words {
            let count = UInt32(word.utf8.count)
            bytes += [UInt8(count >> 24), UInt8((count >> 16) & 0xff), UInt8((count >> 8) & 0xff), UInt8(count & 0xff)]
            bytes += Array(word.utf8)
        }
        return bytes + Array(fragments.utf8)
    }()
}

/// A zlib failure while compressing or decompressing a header block.
struct SPDYCompressionError: Error, CustomStringConvertible {
    var description: String
}

/// Compresses the header blocks one side of a connection sends.
final class SPDYHeaderDeflater {
    /// zlib keeps a pointer back to its stream structure, so it must never move.
    private let stream = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)

    /// A failed init leaves cleaning up to deinit (deflateEnd is harmless on a stream it never set up).
    init() throws {
        stream.initialize(to: z_stream())
        guard czlib_deflate_init(stream, Z_BEST_COMPRESSION) == Z_OK else {
            throw SPDYCompressionError(description: "deflateInit failed")
        }
        let status = SPDYHeaderDictionary.bytes.withUnsafeBufferPointer {
            deflateSetDictionary(stream, $0.baseAddress, UInt32($0.count))
        }
        guard status == Z_OK else {
            throw SPDYCompressionError(description: "deflateSetDictionary failed: \(status)")
        }
    }

    deinit {
        deflateEnd(stream)
        stream.deallocate()
    }

    /// The compressed form of `block`, ending at a byte boundary (sync flush).
    func compress(_ block: [UInt8]) throws -> [UInt8] {
        try runZlib(stream, over: block) { deflate(stream, Z_SYNC_FLUSH) }
    }
}

/// Decompresses the header blocks the other side of a connection sends.
final class SPDYHeaderInflater {
    private let stream = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)

    init() throws {
        stream.initialize(to: z_stream())
        guard czlib_inflate_init(stream) == Z_OK else {
            throw SPDYCompressionError(description: "inflateInit failed")
        }
    }

    deinit {
        inflateEnd(stream)
        stream.deallocate()
    }

    /// The plain header block that `compressed` (one frame's share of the stream) carries.
    func decompress(_ compressed: [UInt8]) throws -> [UInt8] {
        try runZlib(stream, over: compressed) {
            let status = inflate(stream, Z_SYNC_FLUSH)
            guard status == Z_NEED_DICT else { return status }
            let primed = SPDYHeaderDictionary.bytes.withUnsafeBufferPointer {
                inflateSetDictionary(stream, $0.baseAddress, UInt32($0.count))
            }
            return primed == Z_OK ? inflate(stream, Z_SYNC_FLUSH) : primed
        }
    }
}

/// Feeds `input` to `stream` and runs `step` (a deflate or inflate call) until zlib has no
/// more output to give for it.
private func runZlib(_ stream: UnsafeMutablePointer<z_stream>, over input: [UInt8], _ step: () -> Int32) throws
    -> [UInt8]
{
    var input = input
    return try input.withUnsafeMutableBufferPointer { input in
        stream.pointee.next_in = input.baseAddress
        stream.pointee.avail_in = UInt32(input.count)
        defer { stream.pointee.next_in = nil }
        var output: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        repeat {
            let produced = try chunk.withUnsafeMutableBufferPointer { chunk in
                stream.pointee.next_out = chunk.baseAddress
                stream.pointee.avail_out = UInt32(chunk.count)
                defer { stream.pointee.next_out = nil }
                let status = step()
                guard status == Z_OK || status == Z_BUF_ERROR else {
                    throw SPDYCompressionError(description: "zlib failed: \(status)")
                }
                return chunk.count - Int(stream.pointee.avail_out)
            }
            output += chunk[0..<produced]
        } while stream.pointee.avail_out == 0
        return output
    }
}

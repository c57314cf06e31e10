/// Strict unpadded base64url (RFC 7515 §2): the alphabet `A-Z a-z 0-9 - _`, no padding,
/// no whitespace, and no non-zero bits left over in the final character.
enum Base64URL {
    private static let decodeTable: [UInt8] = {
        var table = [UInt8](repeating: 0xFF, count: 256)
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)
        for (index, byte) in alphabet.enumerated() { table[Int(byte)] = UInt8(index) }
        return table
    }()

    /// Decodes `input`, or returns nil if it is not canonical unpadded base64url.
    static func decode(_ input: some Collection<UInt8>) -> [UInt8]? {
        if let decoded = input.withContiguousStorageIfAvailable({ decode(buffer: $0) }) { return decoded }
        return Array(input).withUnsafeBufferPointer { decode(buffer: $0) }
    }

    /// Every request that misses the token cache decodes three parts of about a kilobyte in all:
    /// four characters to three bytes at a time, into an array allocated once at its final size.
    private static func decode(buffer input: UnsafeBufferPointer<UInt8>) -> [UInt8]? {
        let count = input.count
        if count % 4 == 1 { return nil }
        // Unpadded, n characters carry floor(6n / 8) bytes.
        let outputCount = count * 3 / 4
        var valid = true
        let output = decodeTable.withUnsafeBufferPointer { table in
            [UInt8](unsafeUninitializedCapacity: outputCount) { output, initialized in
                var index = 0
                var written = 0
                while index + 4 <= count {
                    let a = table[Int(input[index])]
                    let b = table[Int(input[index + 1])]
                    let c = table[Int(input[index + 2])]
                    let d = table[Int(input[index + 3])]
                    // Alphabet values are below 64; 0xFF marks a byte outside it.
                    guard (a | b | c | d) & 0xC0 == 0 else {
                        valid = false
                        return
                    }
                    let word = UInt32(a) << 18 | UInt32(b) << 12 | UInt32(c) << 6 | UInt32(d)
                    output[written] = UInt8(truncatingIfNeeded: word >> 16)
                    output[written + 1] = UInt8(truncatingIfNeeded: word >> 8)
                    output[written + 2] = UInt8(truncatingIfNeeded: word)
                    index += 4
                    written += 3
                }
                switch count - index {
                case 2:
                    let a = table[Int(input[index])]
                    let b = table[Int(input[index + 1])]
                    // 12 bits for one byte: the 4 left over must be zero, or two encodings would
                    // decode to the same bytes.
                    guard (a | b) & 0xC0 == 0, b & 0x0F == 0 else {
                        valid = false
                        return
                    }
                    output[written] = a << 2 | b >> 4
                    written += 1
                case 3:
                    let a = table[Int(input[index])]
                    let b = table[Int(input[index + 1])]
                    let c = table[Int(input[index + 2])]
                    // 18 bits for two bytes: the 2 left over must be zero.
                    guard (a | b | c) & 0xC0 == 0, c & 0x03 == 0 else {
                        valid = false
                        return
                    }
                    output[written] = a << 2 | b >> 4
                    output[written + 1] = (b & 0x0F) << 4 | c >> 2
                    written += 2
                default:
                    break
                }
                initialized = written
            }
        }
        return valid ? output : nil
    }

    static func encode(_ bytes: some Collection<UInt8>) -> String {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)
        var output = [UInt8]()
        output.reserveCapacity((bytes.count * 4 + 2) / 3)
        var accumulator: UInt32 = 0
        var bits = 0
        for byte in bytes {
            accumulator = (accumulator << 8) | UInt32(byte)
            bits += 8
            while bits >= 6 {
                bits -= 6
                output.append(alphabet[Int((accumulator >> UInt32(bits)) & 0x3F)])
            }
        }
        if bits > 0 { output.append(alphabet[Int((accumulator << UInt32(6 - bits)) & 0x3F)]) }
        return String(decoding: output, as: UTF8.self)
    }
}

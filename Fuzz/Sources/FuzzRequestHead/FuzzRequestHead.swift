import FuzzSupport
import Gateway
import Issuers
import NIOCore
import NIOEmbedded
import NIOHTTP1

/// The executable's entry point (SwiftPM's name for it): libFuzzer's driver.
@_cdecl("FuzzRequestHead_main")
public func fuzzRequestHeadMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runLibFuzzer(argc, argv, target: fuzzRequestHead)
}

/// Request bytes → the gateway's decision for each request head: decoded by the same NIO HTTP
/// server pipeline and limits as the proxy's listener, then screened (`RequestScreening`) with
/// tokens judged against the fixed key set. Checks header hygiene, smuggling and token rules.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzRequestHead(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    let bytes = inputBytes(data, count)
    for request in DecodedRequest.decode(bytes) {
        let decision = RequestScreening.screen(
            request.head, allowsUpgrade: true,
            authenticate: { token in
                switch FixedIssuers.judge(token) {
                case .success(let identity): .authenticated(identity)
                case .failure(let rejection): .rejected(rejection, issuer: nil)
                }
            },
            authorization: Upstream.authorization, clientAddress: Upstream.clientAddress,
            authority: Upstream.authority)
        DecisionInvariants.check(decision, for: request)
    }
    return 0
}

/// The proxy's own side of the rewrite, as the fuzz target fixes it.
enum Upstream {
    static let authorization = "Bearer proxy-service-account-token"
    static let clientAddress = "203.0.113.7"
    static let authority = "api.fuzz.invalid:6443"
}

/// One request as the proxy's HTTP decoder delivers it.
struct DecodedRequest {
    var head: HTTPRequestHead
    var bodyBytes = 0
    /// The whole body arrived (the input may stop in the middle of one).
    var ended = false

    /// Every request head the listener's decoder yields for `bytes` (a parse error ends the list,
    /// as it ends the connection).
    static func decode(_ bytes: [UInt8]) -> [DecodedRequest] {
        let channel = EmbeddedChannel()
        defer { _ = try? channel.finish() }
        var limits = NIOHTTPDecoderLimitConfiguration()
        limits.maxHeaderListSize = ProxyServer.maximumHeaderBytes
        limits.maxHeaderFieldSize = ProxyServer.maximumHeaderBytes
        limits.maxHeaderFieldCount = 512
        do {
            try channel.pipeline.syncOperations.configureHTTPServerPipeline(
                withPipeliningAssistance: false, withErrorHandling: false, withOutboundHeaderValidation: true,
                withEncoderConfiguration: .init(), withDecoderLimitConfiguration: limits)
        } catch {
            preconditionFailure("cannot build the HTTP pipeline: \(error)")
        }
        // A parse error stops the decoder; the parts before it were delivered all the same.
        _ = try? channel.writeInbound(ByteBuffer(bytes: bytes))
        var requests: [DecodedRequest] = []
        while let part = try? channel.readInbound(as: HTTPServerRequestPart.self) {
            switch part {
            case .head(let head): requests.append(DecodedRequest(head: head))
            case .body(let body): requests[requests.count - 1].bodyBytes += body.readableBytes
            case .end: requests[requests.count - 1].ended = true
            }
        }
        return requests
    }
}

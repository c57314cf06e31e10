import Config
import NIOCore
import NIOHTTP1

/// A Kubernetes `Status` object, the body every API server error carries; kubectl prints its message.
struct StatusResponse: Sendable {
    var code: HTTPResponseStatus
    var reason: String
    var message: String

    static let unauthorized = StatusResponse(code: .unauthorized, reason: "Unauthorized", message: "Unauthorized")

    static func forbidden(_ message: String) -> StatusResponse {
        StatusResponse(code: .forbidden, reason: "Forbidden", message: message)
    }

    static func badRequest(_ message: String) -> StatusResponse {
        StatusResponse(code: .badRequest, reason: "BadRequest", message: message)
    }

    static func serviceUnavailable(_ message: String) -> StatusResponse {
        StatusResponse(code: .serviceUnavailable, reason: "ServiceUnavailable", message: message)
    }

    static func badGateway(_ message: String) -> StatusResponse {
        StatusResponse(code: .badGateway, reason: "InternalError", message: message)
    }

    static func gatewayTimeout(_ message: String) -> StatusResponse {
        StatusResponse(code: .gatewayTimeout, reason: "Timeout", message: message)
    }

    var json: String {
        "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\","
            + "\"message\":\(Self.quote(message)),\"reason\":\(Self.quote(reason)),\"code\":\(code.code)}"
    }

    /// A JSON string literal for `text`.
    static func quote(_ text: String) -> String {
        JSONText.quoted(text)
    }
}

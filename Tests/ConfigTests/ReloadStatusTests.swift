import Foundation
import Testing

@testable import Config

@Suite("Reload status, as the metrics will report it")
struct ReloadStatusTests {
    @Test("the start-up load sets the last success and hash without counting a reload; reloads count by result")
    func counting() {
        let status = CurrentReloadStatus()
        #expect(status.current == ReloadStatus())
        let start = Date(timeIntervalSince1970: 1_000)
        status.recordInitialLoad(sha256: "aa", at: start)
        #expect(status.current.successes == 0)
        #expect(status.current.lastSuccess == start)
        #expect(status.current.configurationSHA256 == "aa")

        status.recordFailure()
        status.recordFailure()
        #expect(status.current.failures == 2)
        #expect(status.current.lastSuccess == start, "a failure leaves the last success alone")
        #expect(status.current.configurationSHA256 == "aa")

        let later = Date(timeIntervalSince1970: 2_000)
        status.recordSuccess(sha256: "bb", at: later)
        #expect(status.current.successes == 1)
        #expect(status.current.failures == 2)
        #expect(status.current.lastSuccess == later)
        #expect(status.current.configurationSHA256 == "bb")
    }
}

-- wrk script: requests at a fixed rate, for latency at a load the server can carry.
--
--   wrk -t THREADS -c CONNECTIONS -d SECONDS --latency -s paced.lua URL -- RATE THREADS
--
-- wrk asks delay() before every request. Each thread keeps one schedule that its connections
-- share: slots RATE/THREADS per second apart, and a request waits for the next free slot, so
-- the thread sends at that rate while the server keeps up (when it does not, requests go as soon
-- as a connection is free, slots more than 2 ms late are dropped rather than made up in a
-- burst, and the rate falls; the achieved rate is printed). wrk's timers count
-- whole milliseconds, so a request goes up to half a millisecond before or after its slot: short
-- bursts, the same for every server measured. wrk's latency runs from writing a request to the
-- end of its response, so the wait before it is never counted. There is no warm-up inside: run
-- a short one first.
--
-- done() prints one line: "paced REQUESTS P50_US P99_US ERRORS RATE_ACHIEVED".
local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } kip_timespec;
int clock_gettime(int clock, kip_timespec *tp);
]]
local timespec = ffi.new("kip_timespec")
local CLOCK_MONOTONIC = 1

local function now_us()
    ffi.C.clock_gettime(CLOCK_MONOTONIC, timespec)
    return tonumber(timespec.tv_sec) * 1e6 + tonumber(timespec.tv_nsec) / 1e3
end

local interval_us = nil
-- How far behind the schedule may be made up: wrk's timers are late by up to a millisecond.
local catch_up_us = 2000
local slot = nil

function init(args)
    local rate = tonumber(args[1])
    local threads = tonumber(args[2])
    if not rate or not threads or rate <= 0 or threads <= 0 then
        error("paced.lua needs RATE and THREADS after --, e.g. -- 10000 2")
    end
    interval_us = 1e6 * threads / rate
end

function delay()
    local now = now_us()
    if slot == nil then
        slot = now
    end
    -- Late by more than a few milliseconds (the server stalled): those slots are lost, not
    -- made up in a burst at full speed.
    if slot < now - catch_up_us then
        slot = now - catch_up_us
    end
    local wait = slot - now
    slot = slot + interval_us
    if wait <= 0 then
        return 0
    end
    -- wrk's timers count whole milliseconds: round, so early and late sends even out
    return math.floor(wait / 1000 + 0.5)
end

function done(summary, latency, requests)
    local e = summary.errors
    local errors = e.connect + e.read + e.write + e.status + e.timeout
    local seconds = summary.duration / 1e6
    io.write(string.format("paced %d %.0f %.0f %d %.0f\n", summary.requests,
        latency:percentile(50), latency:percentile(99), errors, summary.requests / seconds))
end

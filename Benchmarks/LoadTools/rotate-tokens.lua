-- wrk script: every request carries the next of N distinct tokens (one a line in the file
-- given after `--`), so a proxy without a token cache verifies every request.
local tokens = {}
local i = 0

function init(args)
    for line in io.lines(args[1]) do
        if #line > 0 then tokens[#tokens + 1] = line end
    end
    -- each wrk thread has its own Lua state: start the threads at different places
    i = math.random(#tokens)
end

function request()
    i = i % #tokens + 1
    return wrk.format("GET", "/api/v1/namespaces", { ["Authorization"] = "Bearer " .. tokens[i] })
end

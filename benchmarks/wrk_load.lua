-- wrk script for benchmarks/server.py: each connection is one client that sends a request,
-- waits for the answer, pauses (a random pause averaging WRK_THINK_MS milliseconds, none when
-- 0), and sends the next. Requests go to the paths in the file WRK_PATHS in turn, with
-- "Authorization: Bearer WRK_TOKEN"; WRK_BODY (a file), if set, is POSTed as JSON. done()
-- prints one line "JSON {...}" with the latency percentiles and the answers by status.
local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  paths = {}
  for line in io.lines(os.getenv("WRK_PATHS")) do paths[#paths + 1] = line end
  headers = {["Authorization"] = "Bearer " .. os.getenv("WRK_TOKEN")}
  think = tonumber(os.getenv("WRK_THINK_MS") or "0")
  body = nil
  method = "GET"
  if os.getenv("WRK_BODY") then
    local f = io.open(os.getenv("WRK_BODY"), "rb")
    body = f:read("*a")
    f:close()
    method = "POST"
    headers["Content-Type"] = "application/json"
  end
  i = id * 7919
  statuses = {}
  math.randomseed(1000 + id)
end

function request()
  i = i + 1
  return wrk.format(method, paths[(i % #paths) + 1], headers, body)
end

function delay()
  if think <= 0 then return 0 end
  return -think * math.log(1 - math.random())
end

function response(status, hdrs, b)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local by = {}
  for _, t in ipairs(threads) do
    for s, n in pairs(t:get("statuses")) do by[s] = (by[s] or 0) + n end
  end
  local parts = {}
  for s, n in pairs(by) do parts[#parts + 1] = string.format("\"%d\": %d", s, n) end
  local e = summary.errors
  io.write(string.format(
    "JSON {\"p50_ms\": %.3f, \"p99_ms\": %.3f, \"max_ms\": %.3f, \"requests\": %d, " ..
    "\"socket_errors\": %d, \"duration_s\": %.3f, \"statuses\": {%s}}\n",
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000,
    summary.requests, e.connect + e.read + e.write + e.timeout, summary.duration / 1e6,
    table.concat(parts, ", ")))
end

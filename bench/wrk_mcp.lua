-- wrk script for bench/: POSTs one stateless MCP request (2026-07-28) over and
-- over. The body comes from WRK_MCP_BODY, the headers from WRK_MCP_HEADERS
-- ("Name: value" lines). A non-200 answer, a JSON-RPC error or an isError
-- result counts as an error. `done` prints one JSON line for the driver, with
-- the share of calls that took 36 to 48 ms: where Nagle's algorithm meeting
-- the client's delayed ACK shows (about 40 ms).
wrk.method = "POST"
wrk.body = os.getenv("WRK_MCP_BODY")
for line in string.gmatch(os.getenv("WRK_MCP_HEADERS") or "", "[^\n]+") do
  local name, value = string.match(line, "^([^:]+):%s*(.*)$")
  if name then wrk.headers[name] = value end
end

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  failed = 0
  example = ""
end

function response(status, headers, body)
  if status ~= 200
    or string.find(body, '"isError":true', 1, true)
    or string.find(body, '"error":{', 1, true) then
    failed = failed + 1
    if example == "" then
      -- Kept JSON-safe for the driver: no quotes, backslashes or control characters.
      example = string.gsub(status .. " " .. string.sub(body, 1, 300), '[%c"\\]', " ")
    end
  end
end

-- The share of calls faster than `us`, from the latency percentiles.
local function share_below(latency, us)
  local low, high = 0, 100
  for _ = 1, 30 do
    local mid = (low + high) / 2
    if latency:percentile(mid) < us then low = mid else high = mid end
  end
  return low / 100
end

function done(summary, latency, requests)
  local failures = summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout
  local example = ""
  for _, thread in ipairs(threads) do
    failures = failures + thread:get("failed")
    if example == "" then example = thread:get("example") end
  end
  io.write(string.format(
    '{"requests":%d,"errors":%d,"timeouts":%d,"seconds":%.3f,"p50_us":%.1f,"p90_us":%.1f,"p99_us":%.1f,' ..
      '"stall_share":%.4f,"example":"%s"}\n',
    summary.requests, failures, summary.errors.timeout, summary.duration / 1e6,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    share_below(latency, 48000) - share_below(latency, 36000), example))
end

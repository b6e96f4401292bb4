-- wrk script: stateless MCP 2026-07-28 `tools/call system.health` requests on
-- kept-alive connections (bench/http_keepalive.sh runs it). Every answer is
-- checked: a response that is not HTTP 200 with `"isError":false` counts as
-- an error, so a fast failure never passes for a fast call.

local body = [[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"system.health","arguments":{},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/clientInfo":{"name":"wrk","version":"1"}}}}]]

wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json, text/event-stream"
wrk.headers["MCP-Protocol-Version"] = "2026-07-28"
wrk.headers["Mcp-Method"] = "tools/call"
wrk.headers["Mcp-Name"] = "system.health"

local threads = {}

function setup(thread)
  thread:set("failed", 0)
  table.insert(threads, thread)
end

function response(status, headers, body)
  if status ~= 200 or not string.find(body, '"isError":false', 1, true) then
    failed = failed + 1
  end
end

-- The share of requests faster than `ms`, from the latency percentiles.
local function share_below(latency, ms)
  local low, high = 0, 100
  for _ = 1, 30 do
    local mid = (low + high) / 2
    if latency:percentile(mid) < ms * 1000 then low = mid else high = mid end
  end
  return low
end

function done(summary, latency, requests)
  local failed = 0
  for _, thread in ipairs(threads) do
    failed = failed + thread:get("failed")
  end
  local ms = function(us) return us / 1000 end
  io.write(string.format(
    "RESULT requests=%d rps=%.0f p50=%.2fms p90=%.2fms p99=%.2fms max=%.2fms failed=%d socket_errors=%d\n",
    summary.requests, summary.requests / (summary.duration / 1e6),
    ms(latency:percentile(50)), ms(latency:percentile(90)), ms(latency:percentile(99)), ms(latency.max),
    failed, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
  -- Nagle meeting a delayed ACK shows as a cluster at about 40 ms (36-48 ms).
  local edges = {5, 10, 20, 36, 48}
  local previous, from, line = 0, 0, "SHARES"
  for _, ms in ipairs(edges) do
    local below = share_below(latency, ms)
    line = line .. string.format(" %d-%dms=%.1f%%", from, ms, below - previous)
    previous, from = below, ms
  end
  io.write(string.format("%s %dms+=%.1f%%\n", line, from, 100 - previous))
end

-- Optional request method and body from the environment (default GET).
wrk.method = os.getenv("WRK_METHOD") or "GET"
wrk.body = os.getenv("WRK_BODY")
-- Optional authorization header (the soak's authenticated writes).
local authorization = os.getenv("WRK_AUTHORIZATION")
if authorization ~= nil and authorization ~= "" then
  wrk.headers["Authorization"] = authorization
end

-- Optional spread over droplets: with WRK_SPREAD=N, request i goes to
-- /d{i mod N}/ (droplets d0 … d{N-1}), round robin per wrk thread.
local spread = tonumber(os.getenv("WRK_SPREAD") or "")
if spread ~= nil and spread > 0 then
  local next = 0
  request = function()
    local path = "/d" .. next .. "/"
    next = (next + 1) % spread
    return wrk.format(nil, path)
  end
end

-- Prints wrk's summary as one JSON line prefixed with WRK_JSON, so the
-- harness reads exact numbers (including p99.9) instead of wrk's text.
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"p999":%d,"max":%d,"mean":%.1f}}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    latency.max, latency.mean))
end

-- wrk script: POST a generic-format end-of-call event with a unique call id per request.
-- Env: INFLOW_BENCH_TOKEN (bearer token), INFLOW_BENCH_RUN (run tag), INFLOW_BENCH_DELAY_MS
-- (per-connection pause between requests, for a fixed-rate run; 0 = as fast as possible).
local token = os.getenv("INFLOW_BENCH_TOKEN") or "bench-token"
local run = os.getenv("INFLOW_BENCH_RUN") or "r"
local pause = tonumber(os.getenv("INFLOW_BENCH_DELAY_MS") or "0")
local threads = {}
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("tid", counter)
  table.insert(threads, thread)
end

function init(args)
  n = 0
end

function delay()
  return pause
end

function request()
  n = n + 1
  local id = string.format("%s-%d-%d", run, tid, n)
  local num = string.format("+7916%07d", (tid * 1000003 + n) % 10000000)
  local body = '{"call_id":"' .. id .. '","event":"end","direction":"inbound","external_number":"' .. num ..
    '","did":"+74951234567","duration_secs":30,"disposition":"answered",' ..
    '"started_at":"2026-11-27T07:00:00Z","ended_at":"2026-11-27T07:00:30Z"}'
  return wrk.format("POST", "/pbx/generic", {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token}, body)
end

function done(summary, latency, requests)
  io.write(string.format("RESULT requests=%d non2xx=%d errors=%d duration_s=%.2f rps=%.1f p50_ms=%.2f p99_ms=%.2f\n",
    summary.requests, summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.duration / 1e6, summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end

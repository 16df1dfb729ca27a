-- What bench/api_mix.lua and bench/directory_paths.lua share: wrk's threads, the open-loop
-- schedule and the one-line JSON summary. Loaded with `require` (bench/wrk.py puts this
-- folder on LUA_PATH).
--
-- Open loop: with BENCH_RATE set (calls/s for each connection), calls are due at fixed
-- intervals from a random phase, and each latency runs from the call's due time, not from
-- when it could be sent, so a slow server cannot hide its queue (no coordinated omission,
-- as wrk2 does; wrk2 is not in Debian). Run one connection per wrk thread (-t N -c N), so
-- a thread's answers come back in the order of its calls.

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clock, bench_timespec *out);
]]
local clock = ffi.new("bench_timespec")

local M = {}
local threads = {}
local counter = 0
local interval_us, next_at, scheduled

-- Read back from each thread by `M.done`: wrk's thread:get reads a thread's globals.
latencies, bad, counts = {}, 0, {}

function M.now_us()
  ffi.C.clock_gettime(1, clock) -- CLOCK_MONOTONIC
  return tonumber(clock.tv_sec) * 1000000 + tonumber(clock.tv_nsec) / 1000
end

function M.setup(thread)
  counter = counter + 1
  thread:set("thread_number", counter)
  table.insert(threads, thread)
end

-- In each thread's init: seed its random choices, and start its schedule when open-loop.
function M.init(thread_number)
  math.randomseed(1000 + thread_number)
  local rate = tonumber(os.getenv("BENCH_RATE") or "")
  if rate then
    interval_us = 1000000 / rate
    next_at = M.now_us() + math.random() * interval_us
  end
end

function M.delay()
  if not interval_us then
    return 0
  end
  scheduled = next_at
  next_at = next_at + interval_us
  return math.max(0, math.ceil((scheduled - M.now_us()) / 1000))
end

-- In each response: `what` counts the call under that name (optional).
function M.answered(status, what)
  if interval_us then
    table.insert(latencies, (M.now_us() - scheduled) / 1000)
  end
  if what then
    counts[what] = (counts[what] or 0) + 1
  end
  if status ~= 200 then
    bad = bad + 1
  end
end

local function quantile(sorted, p)
  if #sorted == 0 then
    return "null"
  end
  return string.format("%.3f", sorted[math.min(#sorted, math.floor(#sorted * p) + 1)])
end

-- wrk's done(): one JSON line, with the calls counted by name under "calls".
function M.done(summary, latency)
  local all, made, non200 = {}, {}, 0
  for _, thread in ipairs(threads) do
    for _, ms in ipairs(thread:get("latencies")) do
      table.insert(all, ms)
    end
    for name, n in pairs(thread:get("counts")) do
      made[name] = (made[name] or 0) + n
    end
    non200 = non200 + thread:get("bad")
  end
  table.sort(all)
  local calls = {}
  for name, n in pairs(made) do
    table.insert(calls, string.format('"%s":%d', name, n))
  end
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"seconds":%.3f,"p50_ms":%.3f,"p99_ms":%.3f,"max_ms":%.3f,'
      .. '"open_p50_ms":%s,"open_p99_ms":%s,"open_samples":%d,"calls":{%s},'
      .. '"non200":%d,"socket_errors":%d}\n',
    summary.requests,
    summary.duration / 1e6,
    latency:percentile(50) / 1000,
    latency:percentile(99) / 1000,
    latency.max / 1000,
    quantile(all, 0.5),
    quantile(all, 0.99),
    #all,
    table.concat(calls, ","),
    non200,
    e.connect + e.read + e.write + e.timeout
  ))
end

return M

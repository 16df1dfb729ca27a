-- wrk script for bench/directory.py: GET each path of a list, as a signed-in device.
--
-- Environment: BENCH_PATHS, a file of paths (one a line, query strings already encoded);
-- BENCH_TOKEN, when set, the bearer token sent with each call; BENCH_RATE, when set, the
-- arrival rate of each connection in calls/s: the open-loop mode (as bench/api_mix.lua:
-- calls are due at fixed intervals, random phase per connection, and each latency runs
-- from the call's due time, so a slow server cannot hide its queue). Run one connection
-- per wrk thread (-t N -c N). Each thread starts at its own place in the list and walks
-- it round. The summary is one JSON line: wrk's closed-loop percentiles, the open-loop
-- ones, and the calls that did not answer 200.

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clock, bench_timespec *out);
]]
local clock = ffi.new("bench_timespec")
local function now_us()
  ffi.C.clock_gettime(1, clock) -- CLOCK_MONOTONIC
  return tonumber(clock.tv_sec) * 1000000 + tonumber(clock.tv_nsec) / 1000
end

local counter = 0
local threads = {}

function setup(thread)
  counter = counter + 1
  thread:set("thread_number", counter)
  table.insert(threads, thread)
end

local paths = {}
local headers = {}
local position
local interval_us, next_at, scheduled
latencies, bad = {}, 0

function init(args)
  math.randomseed(1000 + thread_number)
  for line in io.lines(os.getenv("BENCH_PATHS")) do
    table.insert(paths, line)
  end
  local token = os.getenv("BENCH_TOKEN")
  if token and token ~= "" then
    headers["Authorization"] = "Bearer " .. token
  end
  position = (thread_number * 7919) % #paths
  local rate = tonumber(os.getenv("BENCH_RATE") or "")
  if rate then
    interval_us = 1000000 / rate
    next_at = now_us() + math.random() * interval_us
  end
end

function delay()
  if not interval_us then
    return 0
  end
  scheduled = next_at
  next_at = next_at + interval_us
  return math.max(0, math.ceil((scheduled - now_us()) / 1000))
end

function request()
  position = position % #paths + 1
  return wrk.format("GET", paths[position], headers)
end

function response(status, headers, body)
  if interval_us then
    table.insert(latencies, (now_us() - scheduled) / 1000)
  end
  if status ~= 200 then
    bad = bad + 1
  end
end

function done(summary, latency, requests)
  local all, non200 = {}, 0
  for _, thread in ipairs(threads) do
    for _, ms in ipairs(thread:get("latencies")) do
      table.insert(all, ms)
    end
    non200 = non200 + thread:get("bad")
  end
  table.sort(all)
  local function pick(p)
    if #all == 0 then
      return "null"
    end
    return string.format("%.3f", all[math.min(#all, math.floor(#all * p) + 1)])
  end
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"seconds":%.3f,"p50_ms":%.3f,"p99_ms":%.3f,"max_ms":%.3f,'
      .. '"open_p50_ms":%s,"open_p99_ms":%s,"open_samples":%d,'
      .. '"non200":%d,"socket_errors":%d}\n',
    summary.requests,
    summary.duration / 1e6,
    latency:percentile(50) / 1000,
    latency:percentile(99) / 1000,
    latency.max / 1000,
    pick(0.5),
    pick(0.99),
    #all,
    non200,
    e.connect + e.read + e.write + e.timeout
  ))
end

-- wrk script for bench/api_latency.py: the mixed read load of many devices.
--
-- Each call picks a device at random, then: 40% list its INBOX (following `next`, back to
-- the first page at the end), 40% sync (following `state` while `more`, then again from
-- the device's starting state: a batch of new mail), 20% open a message whose body is in
-- the body cache. One connection per wrk thread (-t N -c N), so a thread's responses
-- come back in the order of its requests and each answer is matched to its call.
--
-- Environment: BENCH_PLAN, the devices (one per line: token, mailbox id, sync state,
-- message ids separated by commas, tab-separated); BENCH_RATE, when set, the arrival rate
-- of each connection in requests/s: the open-loop mode. Calls are then scheduled at
-- fixed intervals (random phase per connection) and each latency is measured from the
-- call's scheduled time, not from when it could be sent, so a slow server cannot hide
-- its queue (no coordinated omission, as wrk2 does).

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

local devices = {}
local cursors, states = {}, {}
local pending_op, pending_device, scheduled
local interval_us, next_at
latencies, counts, bad = {}, { list = 0, sync = 0, get = 0 }, 0

function init(args)
  math.randomseed(1000 + thread_number)
  for line in io.lines(os.getenv("BENCH_PLAN")) do
    local token, mailbox, state, ids = line:match("^([^\t]+)\t([^\t]+)\t([^\t]+)\t([^\t]*)$")
    local messages = {}
    for id in ids:gmatch("[^,]+") do
      table.insert(messages, id)
    end
    table.insert(devices, {
      auth = { ["Authorization"] = "Bearer " .. token },
      mailbox = mailbox,
      state = state,
      messages = messages,
    })
  end
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
  local n = math.random(#devices)
  local device = devices[n]
  local pick = math.random()
  local path
  if pick < 0.4 then
    pending_op = "list"
    path = "/api/v1/mailboxes/" .. device.mailbox .. "/messages?limit=50"
    if cursors[n] then
      path = path .. "&cursor=" .. cursors[n]
    end
  elseif pick < 0.8 then
    pending_op = "sync"
    path = "/api/v1/sync?limit=50&since=" .. (states[n] or device.state)
  else
    pending_op = "get"
    path = "/api/v1/messages/" .. device.messages[math.random(#device.messages)]
  end
  pending_device = n
  if not interval_us then
    scheduled = now_us()
  end
  return wrk.format("GET", path, device.auth)
end

function response(status, headers, body)
  local n = pending_device
  if interval_us then
    table.insert(latencies, (now_us() - scheduled) / 1000)
  end
  counts[pending_op] = counts[pending_op] + 1
  if status ~= 200 then
    bad = bad + 1
    return
  end
  if pending_op == "list" then
    cursors[n] = body:match('"next":%s*"([^"]+)"') -- null at the end: the first page again
  elseif pending_op == "sync" then
    local more = body:match('"more":%s*(%a+)')
    states[n] = (more == "true") and body:match('"state":%s*"([^"]+)"') or nil
  end
end

function done(summary, latency, requests)
  local all, made = {}, { list = 0, sync = 0, get = 0 }
  local non200 = 0
  for _, thread in ipairs(threads) do
    for _, ms in ipairs(thread:get("latencies")) do
      table.insert(all, ms)
    end
    local c = thread:get("counts")
    for k, v in pairs(c) do
      made[k] = made[k] + v
    end
    non200 = non200 + thread:get("bad")
  end
  table.sort(all)
  local function pick(p)
    if #all == 0 then
      return nil
    end
    return all[math.min(#all, math.floor(#all * p) + 1)]
  end
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"seconds":%.3f,"p50_ms":%.3f,"p99_ms":%.3f,'
      .. '"open_p50_ms":%s,"open_p99_ms":%s,"open_samples":%d,'
      .. '"list":%d,"sync":%d,"get":%d,"non200":%d,'
      .. '"socket_errors":%d}\n',
    summary.requests,
    summary.duration / 1e6,
    latency:percentile(50) / 1000,
    latency:percentile(99) / 1000,
    pick(0.5) and string.format("%.3f", pick(0.5)) or "null",
    pick(0.99) and string.format("%.3f", pick(0.99)) or "null",
    #all,
    made.list,
    made.sync,
    made.get,
    non200,
    e.connect + e.read + e.write + e.timeout
  ))
end

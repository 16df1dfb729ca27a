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
-- of each connection in requests/s: the open-loop mode (bench/wrk_open_loop.lua).

local loop = require("wrk_open_loop")

setup, delay, done = loop.setup, loop.delay, loop.done

local devices = {}
local cursors, states = {}, {}
local pending_op, pending_device

function init(args)
  loop.init(thread_number)
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
  return wrk.format("GET", path, device.auth)
end

function response(status, headers, body)
  local n = pending_device
  loop.answered(status, pending_op)
  if status ~= 200 then
    return
  end
  if pending_op == "list" then
    cursors[n] = body:match('"next":%s*"([^"]+)"') -- null at the end: the first page again
  elseif pending_op == "sync" then
    local more = body:match('"more":%s*(%a+)')
    states[n] = (more == "true") and body:match('"state":%s*"([^"]+)"') or nil
  end
end

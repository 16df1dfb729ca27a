-- wrk script for bench/directory.py: GET each path of a list, as a signed-in device.
--
-- Environment: BENCH_PATHS, a file of paths (one a line, query strings already encoded);
-- BENCH_TOKEN, when set, the bearer token sent with each call; BENCH_RATE, when set, the
-- arrival rate of each connection in calls/s: the open-loop mode (bench/wrk_open_loop.lua,
-- which also writes the summary). Each thread starts at its own place in the list and
-- walks it round.

local loop = require("wrk_open_loop")

setup, delay, done = loop.setup, loop.delay, loop.done

local paths = {}
local headers = {}
local position

function init(args)
  loop.init(thread_number)
  for line in io.lines(os.getenv("BENCH_PATHS")) do
    table.insert(paths, line)
  end
  local token = os.getenv("BENCH_TOKEN")
  if token and token ~= "" then
    headers["Authorization"] = "Bearer " .. token
  end
  position = (thread_number * 7919) % #paths
end

function request()
  position = position % #paths + 1
  return wrk.format("GET", paths[position], headers)
end

function response(status, headers, body)
  loop.answered(status)
end

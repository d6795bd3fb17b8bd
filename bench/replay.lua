-- Replays pre-built HTTP requests, each at most once, then stops.
--
-- wrk's own `-d` loop would send the same request again and again; webhook receivers must be measured
-- on distinct events (plus a known share of exact duplicates), so every request here is sent once.
-- Arguments after `--`: <file prefix> <budget seconds>. Thread N reads "<prefix>N.bin", whose requests
-- are separated by NUL bytes (the harness deals requests round-robin, request i to thread i mod T).
-- A thread stops issuing when its file is used up or its budget has passed, waits for every answer,
-- then stops and says so on stderr, which is how the harness knows the run is over.

local ffi = require("ffi")
ffi.cdef([[
typedef struct { long tv_sec; long tv_nsec; } replay_timespec;
int clock_gettime(int clock_id, replay_timespec *tp);
]])
local CLOCK_MONOTONIC = 1
local clock = ffi.new("replay_timespec")

-- os.time() moves in whole seconds, too coarse for a one-second warm-up.
local function seconds()
   ffi.C.clock_gettime(CLOCK_MONOTONIC, clock)
   return tonumber(clock.tv_sec) + tonumber(clock.tv_nsec) * 1e-9
end

local threads = {}

function setup(thread)
   thread:set("id", #threads)
   table.insert(threads, thread)
end

function init(args)
   local file = assert(io.open(args[1] .. id .. ".bin", "rb"))
   local data = file:read("*a")
   file:close()
   requests = {}
   local start = 1
   while start <= #data do
      local stop = string.find(data, "\0", start, true)
      requests[#requests + 1] = string.sub(data, start, stop - 1)
      start = stop + 1
   end
   deadline = seconds() + tonumber(args[2])
   reserved, issued, answered, non2xx = 0, 0, 0, 0
   last = nil
   statuses = {}
   finished = false
end

-- wrk asks delay() before every request() on a connection, so a slot is reserved here: two connections
-- can never both be promised the last request.
function delay()
   if reserved < #requests and seconds() < deadline then
      reserved = reserved + 1
      return 0
   end
   if answered >= reserved and not finished then
      finished = true
      io.stderr:write("replay-thread-done " .. id .. "\n")
      wrk.thread:stop()
   end
   return 3600000 -- park this connection; the thread stops once the others are answered
end

function request()
   if issued < reserved then
      issued = issued + 1
      last = requests[issued]
      return last
   end
   -- A call that delay() did not reserve: wrk's start-up probe of the script (its answer is never
   -- sent) or a re-send after a socket error. Neither takes a new event: the last one is repeated.
   return last or requests[1]
end

function response(status, headers, body)
   answered = answered + 1
   if status < 200 or status > 299 then
      non2xx = non2xx + 1
   end
   statuses[status] = (statuses[status] or 0) + 1
end

local function status_text(counts)
   local parts = {}
   for status, count in pairs(counts) do
      parts[#parts + 1] = string.format('"%d":%d', status, count)
   end
   return table.concat(parts, ",")
end

function done(summary, latency, _rates)
   local issued_list, answered_total, non2xx_total, status_parts = {}, 0, 0, {}
   for _, thread in ipairs(threads) do
      issued_list[#issued_list + 1] = tostring(thread:get("issued"))
      answered_total = answered_total + thread:get("answered")
      non2xx_total = non2xx_total + thread:get("non2xx")
      local text = status_text(thread:get("statuses"))
      if text ~= "" then
         status_parts[#status_parts + 1] = text
      end
   end
   local errors = summary.errors
   io.write(string.format(
      'REPLAY-RESULT {"requests":%d,"duration_us":%d,"answered":%d,"non2xx":%d,"issued":[%s],'
         .. '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f,'
         .. '"errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d,"status":%d},"statuses":[{%s}]}\n',
      summary.requests, summary.duration, answered_total, non2xx_total, table.concat(issued_list, ","),
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean,
      errors.connect, errors.read, errors.write, errors.timeout, errors.status,
      table.concat(status_parts, "},{")))
end

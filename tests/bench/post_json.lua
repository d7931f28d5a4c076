-- wrk script for `python -m tests.bench`: POSTs JSON bodies in turn, counts
-- responses by status (non-2xx make an intake run invalid) and prints one
-- machine-readable line with the figures.
--
-- The bodies come from the file named by the BENCH_BODY_FILE environment
-- variable, one per line; each thread starts at its own place in the list so
-- that no two threads send the same referral at the same time.

local path = os.getenv("BENCH_BODY_FILE")
local file = assert(io.open(path, "rb"), "cannot open BENCH_BODY_FILE " .. tostring(path))
local stride = tonumber(os.getenv("BENCH_THREADS") or "1")
local bodies = {}
for line in file:lines() do
   if line ~= "" then
      table.insert(bodies, line)
   end
end
file:close()
assert(#bodies > 0, "BENCH_BODY_FILE holds no bodies")
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local authorization = os.getenv("BENCH_AUTHORIZATION")
if authorization and authorization ~= "" then
   wrk.headers["Authorization"] = authorization
end

local threads = {}

function setup(thread)
   thread:set("first", #threads)
   table.insert(threads, thread)
end

function init(args)
   statuses = {}
   -- Thread k of n sends bodies k, k + n, k + 2n...: disjoint until the list wraps.
   next_body = first
end

function request()
   local body = bodies[(next_body % #bodies) + 1]
   next_body = next_body + stride
   return wrk.format(nil, nil, nil, body)
end

function response(status, headers, body)
   statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
   local counts = {}
   for _, thread in ipairs(threads) do
      for status, n in pairs(thread:get("statuses")) do
         counts[status] = (counts[status] or 0) + n
      end
   end
   local parts, non2xx = {}, 0
   for status, n in pairs(counts) do
      table.insert(parts, string.format('"%d": %d', status, n))
      if status < 200 or status > 299 then
         non2xx = non2xx + n
      end
   end
   local e = summary.errors
   io.write(string.format(
      'BENCH_RESULT {"requests": %d, "duration_us": %d, "bytes": %d, '
         .. '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, "mean_us": %.1f, '
         .. '"non2xx": %d, "statuses": {%s}, "errors": {"connect": %d, "read": %d, '
         .. '"write": %d, "status": %d, "timeout": %d}}\n',
      summary.requests, summary.duration, summary.bytes,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency.max, latency.mean, non2xx, table.concat(parts, ", "),
      e.connect, e.read, e.write, e.status, e.timeout))
end

-- wrk script of `python -m bench`: posts pre-generated bodies, cycling through them.
-- BENCH_BODIES: a file of lines "<api key>\t<JSON body>" (bench/generate.py writes it);
-- BENCH_PATH: /v1/leads or /v1/leads/batch; BENCH_THREADS: wrk's -t (thread i sends lines
-- i, i+T, i+2T, ...). Counts the answers by status; done() prints one JSON line with them.
local path = os.getenv("BENCH_PATH") or "/v1/leads"
local stride = tonumber(os.getenv("BENCH_THREADS") or "1")
local threads = {}
local requests = {}
local index = 0
statuses = {}
loaded = 0

function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

function init(args)
  local n = 0
  for line in io.lines(os.getenv("BENCH_BODIES")) do
    n = n + 1
    if (n - tid) % stride == 0 then
      local tab = string.find(line, "\t", 1, true)
      local headers = {
        ["Content-Type"] = "application/json",
        ["Authorization"] = "Bearer " .. string.sub(line, 1, tab - 1),
      }
      requests[#requests + 1] = wrk.format("POST", path, headers, string.sub(line, tab + 1))
    end
  end
  loaded = #requests
end

function request()
  index = index % #requests + 1
  return requests[index]
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, _)
  local counts = {}
  local bodies = 0
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses")) do
      counts[status] = (counts[status] or 0) + n
    end
    bodies = bodies + thread:get("loaded")
  end
  local parts = {}
  for status, n in pairs(counts) do
    parts[#parts + 1] = string.format('"%d":%d', status, n)
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH-JSON {"requests":%d,"duration_us":%d,"bodies":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d,"status":%d},' ..
    '"p50_us":%d,"p95_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f,"statuses":{%s}}\n',
    summary.requests, summary.duration, bodies, e.connect, e.read, e.write, e.timeout,
    e.status, latency:percentile(50), latency:percentile(95), latency:percentile(99),
    latency.max, latency.mean, table.concat(parts, ",")))
end

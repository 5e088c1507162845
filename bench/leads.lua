-- wrk script: every request posts a new person (distinct email and phone), so every decision
-- does the full work (all checks pass, everything is committed). BATCH > 1 posts batches.
local counter = 0
local tid = 0
local batch = tonumber(os.getenv("BATCH") or "1")
local threads = {}

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

local function lead()
  counter = counter + 1
  return string.format(
    '{"campaign":"bench","email":"p%d.%d@example.org","phone":"+3361%07d","first_name":"Bench","ref":"r%d"}',
    tid, counter, (tid * 7919 + counter * 104729) % 10000000, counter)
end

local headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer bench-key"}

request = function()
  if batch <= 1 then
    return wrk.format("POST", "/v1/leads", headers, lead())
  end
  local items = {}
  for i = 1, batch do items[i] = lead() end
  return wrk.format("POST", "/v1/leads/batch", headers, '{"leads":[' .. table.concat(items, ",") .. ']}')
end

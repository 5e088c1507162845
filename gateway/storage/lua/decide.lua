--[[ decide.lua: check every dedup scope and cap of one lead, then commit all or nothing.

All keys share the advertiser's hash tag, so this runs unchanged on Redis Cluster.

KEYS[1]                      idempotency answer (string "digest|lead_id|decision|reasons");
                             read and written only when ARGV[4] ~= "0"
KEYS[2]                      the advertiser's delivery stream
KEYS[3 .. 2+n_dedup]         dedup memory: string, epoch ms of the lead that was accepted
KEYS[3+n_dedup .. 2+n_dedup+n_caps]
                             caps: string counter (calendar window) or sorted set of lead ids
                             scored by epoch ms (rolling window)
KEYS[3+n_dedup+n_caps]       optional: the lead-id index feedback reads (string
                             "partner|campaign|channel|accepted_ms|return_until_ms|feedback_until_ms"), written
                             when accepted; absent, nothing is indexed
ARGV[1]  now, epoch ms
ARGV[2]  lead id
ARGV[3]  "1": test mode, check only and write nothing
ARGV[4]  idempotency answer TTL, ms ("0": the request has no Idempotency-Key)
ARGV[5]  the request body digest (idempotency)
ARGV[6]  forced outcome from the person's slot, "decision|reason,reason", or ""
ARGV[7]  n_dedup
ARGV[8]  n_caps
ARGV[9]  delivery record (JSON) appended to the stream when accepted
then 4 per dedup key: reason, window ms, retention ms (the key's TTL), remember ("1"/"0")
then 4 per cap key:   reason, limit, rolling ("1"/"0"), span ms (calendar: TTL; rolling: window)
then, with the index key: its value, its TTL in ms (the campaign's feedback window)

Returns {"ok", decision, "reason,reason"} | {"replay", stored answer} | {"conflict"}
]]

local now = tonumber(ARGV[1])
local lead_id = ARGV[2]
local dry = ARGV[3] == "1"
local idem_ttl = tonumber(ARGV[4])
local digest = ARGV[5]

if idem_ttl > 0 then
  local stored = redis.call("GET", KEYS[1])
  if stored then
    if string.sub(stored, 1, #digest + 1) == digest .. "|" then
      return {"replay", stored}
    end
    return {"conflict"}
  end
end

local function answer(decision, reasons)
  if idem_ttl > 0 and not dry then
    redis.call("SET", KEYS[1], digest .. "|" .. lead_id .. "|" .. decision .. "|" .. reasons,
      "PX", idem_ttl)
  end
  return {"ok", decision, reasons}
end

if ARGV[6] ~= "" then
  local bar = string.find(ARGV[6], "|", 1, true)
  return answer(string.sub(ARGV[6], 1, bar - 1), string.sub(ARGV[6], bar + 1))
end

local n_dedup = tonumber(ARGV[7])
local n_caps = tonumber(ARGV[8])
local payload = ARGV[9]

-- Dedup: a match on any identity in any scope is a duplicate; each scope is reported once.
local dup, dup_seen = {}, {}
for i = 1, n_dedup do
  local a = 9 + (i - 1) * 4
  local at = redis.call("GET", KEYS[2 + i])
  if at and now - tonumber(at) < tonumber(ARGV[a + 2]) then
    local reason = ARGV[a + 1]
    if not dup_seen[reason] then
      dup_seen[reason] = true
      dup[#dup + 1] = reason
    end
  end
end
if #dup > 0 then
  return answer("duplicate", table.concat(dup, ","))
end

local cap_base = 9 + n_dedup * 4
local capped = {}
for j = 1, n_caps do
  local a = cap_base + (j - 1) * 4
  local key = KEYS[2 + n_dedup + j]
  local limit = tonumber(ARGV[a + 2])
  local used
  if ARGV[a + 3] == "1" then
    used = redis.call("ZCOUNT", key, "(" .. (now - tonumber(ARGV[a + 4])), "+inf")
  else
    used = tonumber(redis.call("GET", key) or "0")
  end
  if used >= limit then
    capped[#capped + 1] = ARGV[a + 1]
  end
end
if #capped > 0 then
  return answer("capped", table.concat(capped, ","))
end

if dry then
  return answer("accepted", "")
end

-- Every check passed: commit everything.
for i = 1, n_dedup do
  local a = 9 + (i - 1) * 4
  if ARGV[a + 4] == "1" then
    redis.call("SET", KEYS[2 + i], now, "PX", ARGV[a + 3])
  end
end
for j = 1, n_caps do
  local a = cap_base + (j - 1) * 4
  local key = KEYS[2 + n_dedup + j]
  local span = tonumber(ARGV[a + 4])
  if ARGV[a + 3] == "1" then
    redis.call("ZREMRANGEBYSCORE", key, "-inf", now - span)
    redis.call("ZADD", key, now, lead_id)
    redis.call("PEXPIRE", key, span)
  elseif redis.call("INCR", key) == 1 then
    redis.call("PEXPIRE", key, span)
  end
end
local index_at = 2 + n_dedup + n_caps + 1
if #KEYS >= index_at then
  local a = cap_base + n_caps * 4
  redis.call("SET", KEYS[index_at], ARGV[a + 1], "PX", ARGV[a + 2])
end
redis.call("XADD", KEYS[2], "*", "lead_id", lead_id, "accepted_at_ms", now, "record", payload)
return answer("accepted", "")

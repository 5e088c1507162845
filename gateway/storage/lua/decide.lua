--[[ decide.lua: check every dedup scope and cap of one lead, then commit all or nothing.

All keys share the advertiser's hash tag, so this runs unchanged on Redis Cluster.

KEYS[1]                      idempotency answer (string "digest|lead_id|decision|reasons");
                             read and written only when ARGV[4] ~= "0"
KEYS[2]                      the advertiser's delivery stream
KEYS[3 .. 2+d]               dedup memory (d: the sum of every check's n_keys): each check's
                             hashes, one per generation its window reaches, newest (the
                             current generation) first; field: the mark, value: the acceptance
                             time in ms since the generation began
KEYS[3+d .. 2+d+n_caps]      caps: string counter (calendar window) or sorted set of lead ids
                             scored by epoch ms (rolling window)
KEYS[3+d+n_caps]             optional: the lead-id index feedback reads (string
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
ARGV[10] a generation's length, ms
ARGV[11] the current generation (now // generation length)
then 6 per dedup check: reason, window ms, retention ms (how long the current generation's hash
         outlives the generation), remember ("1"/"0"), field, n_keys
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
local generation_ms = tonumber(ARGV[10])
local generation = tonumber(ARGV[11])

-- Dedup: a match on any identity in any scope is a duplicate; each scope is reported once,
-- so a scope already found needs no more lookups.
local dup, dup_seen = {}, {}
local k = 3
for i = 1, n_dedup do
  local a = 11 + (i - 1) * 6
  local reason, n_keys = ARGV[a + 1], tonumber(ARGV[a + 6])
  if not dup_seen[reason] then
    local window, field = tonumber(ARGV[a + 2]), ARGV[a + 5]
    for g = 0, n_keys - 1 do
      local offset = redis.call("HGET", KEYS[k + g], field)
      if offset and now - ((generation - g) * generation_ms + tonumber(offset)) < window then
        dup_seen[reason] = true
        dup[#dup + 1] = reason
        break
      end
    end
  end
  k = k + n_keys
end
if #dup > 0 then
  return answer("duplicate", table.concat(dup, ","))
end

local n_dedup_keys = k - 3
local cap_base = 11 + n_dedup * 6
local capped = {}
for j = 1, n_caps do
  local a = cap_base + (j - 1) * 4
  local key = KEYS[2 + n_dedup_keys + j]
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

-- Every check passed: commit everything. A generation's hash lives until the generation ends
-- plus the longest retention of any mark written to it: campaigns with shorter windows share
-- the advertiser-wide scope, so an expiry is only ever moved later.
k = 3
local generation_ends = (generation + 1) * generation_ms
for i = 1, n_dedup do
  local a = 11 + (i - 1) * 6
  if ARGV[a + 4] == "1" then
    local key = KEYS[k]
    redis.call("HSET", key, ARGV[a + 5], now - generation * generation_ms)
    -- Relative to the request's clock, like every other TTL the scripts set.
    local ttl = generation_ends + tonumber(ARGV[a + 3]) - now
    if redis.call("PTTL", key) < ttl then
      redis.call("PEXPIRE", key, ttl)
    end
  end
  k = k + tonumber(ARGV[a + 6])
end
for j = 1, n_caps do
  local a = cap_base + (j - 1) * 4
  local key = KEYS[2 + n_dedup_keys + j]
  local span = tonumber(ARGV[a + 4])
  if ARGV[a + 3] == "1" then
    redis.call("ZREMRANGEBYSCORE", key, "-inf", now - span)
    redis.call("ZADD", key, now, lead_id)
    redis.call("PEXPIRE", key, span)
  elseif redis.call("INCR", key) == 1 then
    redis.call("PEXPIRE", key, span)
  end
end
local index_at = 2 + n_dedup_keys + n_caps + 1
if #KEYS >= index_at then
  local a = cap_base + n_caps * 4
  redis.call("SET", KEYS[index_at], ARGV[a + 1], "PX", ARGV[a + 2])
end
redis.call("XADD", KEYS[2], "*", "lead_id", lead_id, "accepted_at_ms", now, "record", payload)
return answer("accepted", "")

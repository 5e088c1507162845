--[[ field_expiry.lua: a measurement, not the gateway's script (bench.decide_cost --field-expiry).

What decide.lua would cost Redis if each dedup mark expired on its own (Redis 7.4's per-field
expiry, HPEXPIRE), so that a mark is one field of one hash per scope, fingerprint key and
bucket, whatever its age, instead of one field in the hash of its generation (decide.lua reads
every generation a window reaches: 2-3 hashes for 30 days, 4-5 for 90). Everything else a
bench lead asks of Redis is done as decide.lua does it, with the same arguments' costs: the
caps, the lead index, the delivery stream. Left out, because bench leads have none: the
idempotency answer, holds, a forced outcome, the legacy layout's hashes.

ARGV[1] is the number of leads, ARGV[2] "1" to write a mark with HSETEX (Redis 8.0), "0" with
HSET and HPEXPIRE (7.4), ARGV[3] the unit of a mark's value in ms (1, or 1000: seconds); each
lead then has 2 ARGV, its number of KEYS and of ARGV,
followed by its own ARGV; its KEYS follow the previous lead's. A lead's own:
KEYS: 1 the delivery stream; then one hash per dedup check (field: the mark, value: the
      acceptance time, epoch ms or s); then each cap's key; then the lead index and its registry
ARGV: 1 now (epoch ms), 2 lead id, 3 the delivery record, 4 NUM (little-endian doubles:
      n_dedup, n_caps; per check: window ms, the mark's TTL ms; per cap: limit, span ms; the
      index's TTL ms), then per check: reason, field; per cap: reason, rolling ("1"/"0");
      then the index's field, packed value, route code, route text
Returns per lead {"ok", decision, "reason,reason"}.
]]

local EXPIRY_SLACK_MS = 60000
-- Redis 8.0's HSETEX sets a field and its expiry in one command (7.4: HSET, then HPEXPIRE).
local HSETEX = ARGV[2] == "1"
-- A mark's value: its acceptance time in units of ARGV[3] ms (1: ms; 1000: seconds, a
-- smaller integer in the listpack, a window then counted in whole seconds).
local UNIT = tonumber(ARGV[3])

local function decide(kb, ab)
  local now = ARGV[ab + 1]
  local numbers = ARGV[ab + 4]
  local num = {struct.unpack("<" .. string.rep("d", #numbers / 8), numbers)}
  local n_dedup, n_caps = num[1], num[2]
  local now_ms = tonumber(now)

  local dup, dup_seen = {}, {}
  for i = 1, n_dedup do
    local a = 4 + (i - 1) * 2
    local reason = ARGV[ab + a + 1]
    if not dup_seen[reason] then
      local at = redis.call("HGET", KEYS[kb + 1 + i], ARGV[ab + a + 2])
      if at and now_ms - tonumber(at) * UNIT < num[2 + (i - 1) * 2 + 1] then
        dup_seen[reason] = true
        dup[#dup + 1] = reason
      end
    end
  end
  if #dup > 0 then
    return {"ok", "duplicate", table.concat(dup, ",")}
  end

  local cap_base, cap_nums = 4 + n_dedup * 2, 2 + n_dedup * 2
  local capped = {}
  for j = 1, n_caps do
    local a, n = cap_base + (j - 1) * 2, cap_nums + (j - 1) * 2
    local key = KEYS[kb + 1 + n_dedup + j]
    local used
    if ARGV[ab + a + 2] == "1" then
      used = redis.call("ZCOUNT", key, "(" .. (now_ms - num[n + 2]), "+inf")
    else
      used = tonumber(redis.call("GET", key) or "0")
    end
    if used >= num[n + 1] then
      capped[#capped + 1] = ARGV[ab + a + 1]
    end
  end
  if #capped > 0 then
    return {"ok", "capped", table.concat(capped, ",")}
  end

  local mark = now
  if UNIT ~= 1 then
    mark = string.format("%d", math.floor(now_ms / UNIT))
  end
  for i = 1, n_dedup do
    local a = 4 + (i - 1) * 2
    local key, field = KEYS[kb + 1 + i], ARGV[ab + a + 2]
    if HSETEX then
      redis.call("HSETEX", key, "PX", num[2 + (i - 1) * 2 + 2], "FIELDS", 1, field, mark)
    else
      redis.call("HSET", key, field, mark)
      redis.call("HPEXPIRE", key, num[2 + (i - 1) * 2 + 2], "FIELDS", 1, field)
    end
  end
  for j = 1, n_caps do
    local a, span = cap_base + (j - 1) * 2, num[cap_nums + (j - 1) * 2 + 2]
    local key = KEYS[kb + 1 + n_dedup + j]
    if ARGV[ab + a + 2] == "1" then
      redis.call("ZREMRANGEBYSCORE", key, "-inf", now_ms - span)
      redis.call("ZADD", key, now, ARGV[ab + 2])
      redis.call("PEXPIRE", key, span)
    elseif redis.call("INCR", key) == 1 then
      redis.call("PEXPIRE", key, span)
    end
  end
  local index_at = 1 + n_dedup + n_caps + 1
  local a = cap_base + n_caps * 2
  local index, routes = KEYS[kb + index_at], KEYS[kb + index_at + 1]
  local packed, code, route = ARGV[ab + a + 2], ARGV[ab + a + 3], ARGV[ab + a + 4]
  local ttl = num[cap_nums + n_caps * 2 + 1]
  local held = redis.call("HGET", routes, code)
  local registered = false
  if not held then
    redis.call("HSET", routes, code, route)
    held, registered = route, true
  end
  if held == route and packed ~= "" then
    redis.call("HSET", index, ARGV[ab + a + 1], packed)
  else
    redis.call("HSET", index, ARGV[ab + a + 1], route .. "|" .. now)
  end
  local raised = redis.call("PTTL", index) < ttl
  if raised then
    redis.call("PEXPIRE", index, ttl + EXPIRY_SLACK_MS)
  end
  if (raised or registered) and redis.call("PTTL", routes) < ttl + EXPIRY_SLACK_MS then
    redis.call("PEXPIRE", routes, ttl + EXPIRY_SLACK_MS)
  end
  redis.call("XADD", KEYS[kb + 1], "*", "lead_id", ARGV[ab + 2], "accepted_at_ms", now,
    "record", ARGV[ab + 3])
  return {"ok", "accepted", ""}
end

local results = {}
local kb, ab = 0, 3
for lead = 1, tonumber(ARGV[1]) do
  local nk, na = tonumber(ARGV[ab + 1]), tonumber(ARGV[ab + 2])
  results[lead] = decide(kb, ab + 2)
  kb, ab = kb + nk, ab + 2 + na
end
return results

--[[ campaign_reserve.lua: a distributed campaign's own dedup and caps for one lead, in the
campaign's slot: check, then take. A step of the sale protocol (docs/decision.md,
"Distribution"), before any buyer is offered the lead.

The checks are decide.lua's. A lead the campaign refuses (duplicate, capped) takes nothing. A
lead it passes has its marks written and its caps counted now, so two leads of one person
cannot both go down the waterfall and a full cap lets no more leads through; what each write
replaced is kept in KEYS[1], for campaign_close.lua to give back if no buyer buys the lead.

KEYS[1]                   the reservation: a string of lines, one per write,
                          "m <hash> <field> <value written> <value replaced, or ->",
                          "c <counter>" or "z <sorted set>"; it is also the proof that this
                          lead id holds the reservation (a keyed retry after a crash)
KEYS[2 .. 1+d]            dedup memory, as decide.lua's KEYS[3 .. 2+d]
KEYS[2+d .. 1+d+n_caps]   caps, as decide.lua's
ARGV[1]  now, epoch ms
ARGV[2]  lead id
ARGV[3]  "1": test mode, check only and write nothing
ARGV[4]  TTL of KEYS[1], ms
ARGV[5]  n_dedup
ARGV[6]  n_caps
ARGV[7]  a generation's length, ms
ARGV[8]  the current generation (now // generation length)
then 6 per dedup check: reason, window ms, retention ms, remember ("1"/"0"), field, n_keys
then 4 per cap key:   reason, limit, rolling ("1"/"0"), span ms (calendar: TTL; rolling: window)

Returns {decision, "reason,reason"}: {"", "held"} when this lead id holds the reservation
already (nothing checked or taken again), {"", "taken"} when taken now (in test mode: when it
would be), {"duplicate", …} or {"capped", …} when refused.
]]

local now = tonumber(ARGV[1])
local lead_id = ARGV[2]
local dry = ARGV[3] == "1"
if not dry and redis.call("EXISTS", KEYS[1]) == 1 then
  return {"", "held"}
end
local n_dedup = tonumber(ARGV[5])
local n_caps = tonumber(ARGV[6])
local generation_ms = tonumber(ARGV[7])
local generation = tonumber(ARGV[8])

local dup, dup_seen = {}, {}
local k = 2
for i = 1, n_dedup do
  local a = 8 + (i - 1) * 6
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
  return {"duplicate", table.concat(dup, ",")}
end

local n_dedup_keys = k - 2
local cap_base = 8 + n_dedup * 6
local capped = {}
for j = 1, n_caps do
  local a = cap_base + (j - 1) * 4
  local key = KEYS[1 + n_dedup_keys + j]
  local used
  if ARGV[a + 3] == "1" then
    used = redis.call("ZCOUNT", key, "(" .. (now - tonumber(ARGV[a + 4])), "+inf")
  else
    used = tonumber(redis.call("GET", key) or "0")
  end
  if used >= tonumber(ARGV[a + 2]) then
    capped[#capped + 1] = ARGV[a + 1]
  end
end
if #capped > 0 then
  return {"capped", table.concat(capped, ",")}
end
if dry then
  return {"", "taken"}
end

-- Take: as decide.lua commits, remembering what each write replaced.
local taken = {}
local offset_now = now - generation * generation_ms
local generation_ends = (generation + 1) * generation_ms
k = 2
for i = 1, n_dedup do
  local a = 8 + (i - 1) * 6
  if ARGV[a + 4] == "1" then
    local key, field = KEYS[k], ARGV[a + 5]
    local previous = redis.call("HGET", key, field) or "-"
    redis.call("HSET", key, field, offset_now)
    local ttl = generation_ends + tonumber(ARGV[a + 3]) - now
    if redis.call("PTTL", key) < ttl then
      redis.call("PEXPIRE", key, ttl)
    end
    taken[#taken + 1] = "m " .. key .. " " .. field .. " " .. offset_now .. " " .. previous
  end
  k = k + tonumber(ARGV[a + 6])
end
for j = 1, n_caps do
  local a = cap_base + (j - 1) * 4
  local key = KEYS[1 + n_dedup_keys + j]
  local span = tonumber(ARGV[a + 4])
  if ARGV[a + 3] == "1" then
    redis.call("ZREMRANGEBYSCORE", key, "-inf", now - span)
    redis.call("ZADD", key, now, lead_id)
    redis.call("PEXPIRE", key, span)
    taken[#taken + 1] = "z " .. key
  else
    if redis.call("INCR", key) == 1 then
      redis.call("PEXPIRE", key, span)
    end
    taken[#taken + 1] = "c " .. key
  end
end
redis.call("SET", KEYS[1], table.concat(taken, "\n"), "PX", ARGV[4])
return {"", "taken"}

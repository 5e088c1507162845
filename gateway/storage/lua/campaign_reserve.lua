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
then, only for a lead with holds (ARGV[3] of two characters), last:
  n_held keys             the holds of the caps that have them (sorted sets: ping id -> the
                          hold's end, epoch ms), in the order of their cap numbers below
ARGV[1]  now, epoch ms
ARGV[2]  lead id
ARGV[3]  "0", or "1": test mode, check only and write nothing. A lead with holds has two
         characters, as decide.lua's: test mode, then "p" (a plain lead: live holds count as
         used), "t" (a ping: check as in test mode and, if it passes, hold a place on each
         cap with holds; nothing else written, no reservation kept) or "c" (a post naming a
         ping: its own live hold counts for it, and is used up whatever the answer)
ARGV[4]  TTL of KEYS[1], ms
ARGV[5]  n_dedup
ARGV[6]  n_caps
ARGV[7]  a generation's length, ms
ARGV[8]  the current generation (now // generation length)
then 6 per dedup check: reason, window ms, retention ms, remember ("1"/"0"), field, n_keys
then 4 per cap key:   reason, limit, rolling ("1"/"0"), span ms (calendar: TTL; rolling: window)
then, only for a lead with holds, last: the number (1 ..) of each cap with holds, in order;
         for a ping or a post naming one, 3 more: ping id, the hold's end (epoch ms), the
         holds' TTL in ms (the hold's end - now; only ever raised); and last of all n_held

Holds cost nothing to a lead without them (ARGV[3] of one character). No record of the ping
is kept in this slot: a post's hold is its own while its ping id is in a holds set with an
end after now, so of two posts naming one ping only the first finds it.

Returns {decision, "reason,reason"}: {"", "held"} when this lead id holds the reservation
already (nothing checked or taken again), {"", "taken"} when taken now (in test mode: when it
would be), {"duplicate", …} or {"capped", …} when refused.
]]

-- As decide.lua's: a dedup hash's expiry raised with a minute to spare, not every lead.
local EXPIRY_SLACK_MS = 60000
local now = tonumber(ARGV[1])
local lead_id = ARGV[2]
local mode = ARGV[3]
local dry = string.sub(mode, 1, 1) == "1"
if not dry and redis.call("EXISTS", KEYS[1]) == 1 then
  return {"", "held"}
end
local n_dedup = tonumber(ARGV[5])
local n_caps = tonumber(ARGV[6])
local generation_ms = tonumber(ARGV[7])
local generation = tonumber(ARGV[8])

-- Holds: the last KEYS and ARGV (see above), read only for a lead that has them.
local holding, held, ping = nil, nil, nil
if #mode > 1 then
  holding = string.sub(mode, 2, 2)
  local n_held = tonumber(ARGV[#ARGV])
  local n_fixed = holding ~= "p" and 3 or 0
  if n_fixed > 0 then
    ping = ARGV[#ARGV - 3]
  end
  local first_arg = #ARGV - 1 - n_fixed - n_held
  held = {}
  for i = 1, n_held do
    held[tonumber(ARGV[first_arg + i])] = KEYS[#KEYS - n_held + i]
  end
end

-- A post naming a ping: its hold is used up whatever the answer (given back when refused).
local function finish(decision, reasons)
  if holding == "c" and not dry then
    for _, key in pairs(held) do
      redis.call("ZREM", key, ping)
    end
  end
  return {decision, reasons}
end

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
  return finish("duplicate", table.concat(dup, ","))
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
  if held and held[j] then
    -- Live holds count as used, but for a post its own (the room it holds is its).
    local holds = held[j]
    used = used + redis.call("ZCOUNT", holds, "(" .. now, "+inf")
    if holding == "c" then
      local ends = redis.call("ZSCORE", holds, ping)
      if ends and tonumber(ends) > now then
        used = used - 1
      end
    end
  end
  if used >= tonumber(ARGV[a + 2]) then
    capped[#capped + 1] = ARGV[a + 1]
  end
end
if #capped > 0 then
  return finish("capped", table.concat(capped, ","))
end
if holding == "t" then
  -- A ping: a place on each cap with holds until the hold ends; ended holds go first.
  if not dry then
    local ends, ttl = ARGV[#ARGV - 2], tonumber(ARGV[#ARGV - 1])
    for _, key in pairs(held) do
      redis.call("ZREMRANGEBYSCORE", key, "-inf", now)
      redis.call("ZADD", key, ends, ping)
      if redis.call("PTTL", key) < ttl then
        redis.call("PEXPIRE", key, ttl)
      end
    end
  end
  return {"", "taken"}
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
      redis.call("PEXPIRE", key, ttl + EXPIRY_SLACK_MS)
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
return finish("", "taken")

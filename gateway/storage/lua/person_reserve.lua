--[[ person_reserve.lua: step 1 of the two-slot protocol, in the person's own slot.

Checks suppression lists, network dedup and contact pressure for one identity of the person
and, if all pass,
reserves: marks the person as seen by this lead and takes a pressure slot for the lead's unit
(advertiser or campaign). The decision script then runs in the advertiser's slot; a lead it
does not accept is released by person_release.lua. A crash between the steps can only leave a
reservation behind, which holds a slot until its window ends: never an extra acceptance.

KEYS[1]  network memory: string "epoch_ms|lead_id" of the person's last acceptance
KEYS[2]  pressure: sorted set of "unit|lead_id" scored by epoch ms
KEYS[3]  suppression: the ids of the lists the identity is on, ",optout,customers," (read only)
ARGV[1]  now, epoch ms
ARGV[2]  lead id
ARGV[3]  "1": test mode, check only and write nothing
ARGV[4]  network window for this lead, ms ("0": no network dedup)
ARGV[5]  network retention, ms (TTL of KEYS[1]; the longest network window of any channel)
ARGV[6]  pressure limit: distinct units per window ("0": no pressure cap)
ARGV[7]  pressure window, ms
ARGV[8]  unit: the advertiser or campaign id the lead would be sent to
ARGV[9]  n: how many suppression lists the campaign checks ("0": none)
then 2 per list: list id, reason code

Returns {reason or "", previous value of KEYS[1] or ""}; reason is the first matching list's
reason code, "duplicate.network" or "cap.person" when refused. A mark or pressure member of
this very lead id (a keyed retry of an attempt that crashed after this step reuses its id) is
the lead's own: it does not refuse it.
]]

local now = tonumber(ARGV[1])
local lead_id = ARGV[2]
local dry = ARGV[3] == "1"
local net_window = tonumber(ARGV[4])
local limit = tonumber(ARGV[6])
local window = tonumber(ARGV[7])
local unit = ARGV[8]

local n_lists = tonumber(ARGV[9])
if n_lists > 0 then
  local on = redis.call("GET", KEYS[3])
  if on then
    for i = 1, n_lists do
      if string.find(on, "," .. ARGV[8 + 2 * i] .. ",", 1, true) then
        return {ARGV[9 + 2 * i], ""}
      end
    end
  end
end

local previous = ""
if net_window > 0 then
  previous = redis.call("GET", KEYS[1]) or ""
  if string.sub(previous, -(#lead_id + 1)) == "|" .. lead_id then
    previous = ""  -- this lead's own mark, left by an attempt that crashed: reserve again
  end
  if previous ~= "" then
    local at = tonumber(string.sub(previous, 1, string.find(previous, "|", 1, true) - 1))
    if now - at < net_window then
      return {"duplicate.network", ""}
    end
  end
end

if limit > 0 then
  local members = redis.call("ZRANGEBYSCORE", KEYS[2], "(" .. (now - window), "+inf")
  local units, count, held = {}, 0, false
  for _, member in ipairs(members) do
    local u = string.sub(member, 1, string.find(member, "|", 1, true) - 1)
    if u == unit then
      held = true
    elseif not units[u] then
      units[u] = true
      count = count + 1
    end
  end
  if not held and count >= limit then
    return {"cap.person", ""}
  end
end

if dry then
  return {"", ""}
end
if net_window > 0 then
  redis.call("SET", KEYS[1], now .. "|" .. lead_id, "PX", ARGV[5])
end
if limit > 0 then
  redis.call("ZREMRANGEBYSCORE", KEYS[2], "-inf", now - window)
  redis.call("ZADD", KEYS[2], now, unit .. "|" .. lead_id)
  redis.call("PEXPIRE", KEYS[2], window)
end
return {"", previous}

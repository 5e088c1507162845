--[[ person_release.lua: step 3 of the two-slot protocol, for a lead that was not accepted.

Gives back what person_reserve.lua took for this lead, and nothing else: the pressure member
of this lead only, and the network mark only while it is still this lead's (restoring the
value it replaced, with that value's remaining time).

KEYS[1]  network memory (see person_reserve.lua)
KEYS[2]  pressure sorted set
ARGV[1]  now, epoch ms
ARGV[2]  lead id
ARGV[3]  unit
ARGV[4]  the value KEYS[1] held before the reservation, or ""
ARGV[5]  network retention, ms ("0": the reservation set no network mark)

Returns 1.
]]

local now = tonumber(ARGV[1])
local lead_id = ARGV[2]
redis.call("ZREM", KEYS[2], ARGV[3] .. "|" .. lead_id)
if tonumber(ARGV[5]) > 0 then
  local current = redis.call("GET", KEYS[1])
  if current and string.sub(current, -(#lead_id + 1)) == "|" .. lead_id then
    local previous = ARGV[4]
    if previous ~= "" then
      local at = tonumber(string.sub(previous, 1, string.find(previous, "|", 1, true) - 1))
      local left = at + tonumber(ARGV[5]) - now
      if left > 0 then
        redis.call("SET", KEYS[1], previous, "PX", left)
        return 1
      end
    end
    redis.call("DEL", KEYS[1])
  end
end
return 1

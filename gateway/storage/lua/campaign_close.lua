--[[ campaign_close.lua: the last step of a distributed campaign's lead, in the campaign's
slot (docs/decision.md, "Distribution"): store the idempotent answer and, for a lead no
buyer bought, give back what campaign_reserve.lua took.

Given back: each mark only while it still holds the value this lead wrote (restoring the value
it replaced, or removing it), in the reverse order of the writes; each calendar counter
decremented while it exists (a period that ended took its counter with it); this lead's entry
of each rolling log. The reservation itself is deleted either way.

KEYS[1]  the reservation (campaign_reserve.lua's KEYS[1]), or the campaign's anchor (none)
KEYS[2]  the idempotent answer (string), or the campaign's anchor (no Idempotency-Key)
ARGV[1]  "1": the lead was sold (what the reservation took is the sale's: kept)
ARGV[2]  the answer's TTL, ms ("0": no answer to store)
ARGV[3]  the answer ("digest|lead_id|decision|reasons|buyers")
ARGV[4]  lead id
KEYS[3 ..]  optional: the holds sets of a ping no buyer would buy (campaign_reserve.lua's
            "t"), or of the ping a post the gateway refused names (campaign_reserve.lua's
            "c" never ran for it), which ARGV[5], the ping id, is removed from: its room
            returns at once
ARGV[5]  the ping id ("" when KEYS has no holds)

Returns 1.
]]

for i = 3, #KEYS do
  redis.call("ZREM", KEYS[i], ARGV[5])
end

if tonumber(ARGV[2]) > 0 then
  redis.call("SET", KEYS[2], ARGV[3], "PX", ARGV[2])
end
local taken = redis.call("GET", KEYS[1])
if not taken then
  return 1
end
if ARGV[1] ~= "1" then
  local lines = {}
  for line in string.gmatch(taken, "[^\n]+") do
    lines[#lines + 1] = line
  end
  for i = #lines, 1, -1 do
    local w = {}
    for word in string.gmatch(lines[i], "%S+") do
      w[#w + 1] = word
    end
    if w[1] == "m" then
      local current = redis.call("HGET", w[2], w[3])
      if current and tonumber(current) == tonumber(w[4]) then
        if w[5] == "-" then
          redis.call("HDEL", w[2], w[3])
        else
          redis.call("HSET", w[2], w[3], w[5])
        end
      end
    elseif w[1] == "c" then
      if redis.call("EXISTS", w[2]) == 1 then
        redis.call("DECR", w[2])
      end
    elseif w[1] == "z" then
      redis.call("ZREM", w[2], ARGV[4])
    end
  end
end
redis.call("DEL", KEYS[1])
return 1

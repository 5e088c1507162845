--[[ suppress_change.lua: put one identity on a suppression list, or take it off.

The identity's key holds the ids of the lists it is on as one string, ",optout,customers,":
half the memory of a set per identity (measured in BENCHMARKS.md), and person_reserve.lua
finds a list with one plain string search.

KEYS[1]  the identity's suppression key (no TTL)
ARGV[1]  list id
ARGV[2]  "1": put on, "0": take off

Returns 1 when the identity's membership changed, 0 when it already was so.
]]

local mark = "," .. ARGV[1] .. ","
local held = redis.call("GET", KEYS[1]) or ","
local at = string.find(held, mark, 1, true)
if ARGV[2] == "1" then
  if at then
    return 0
  end
  redis.call("SET", KEYS[1], held .. ARGV[1] .. ",")
  return 1
end
if not at then
  return 0
end
local left = string.sub(held, 1, at) .. string.sub(held, at + #mark)
if left == "," then
  redis.call("DEL", KEYS[1])
else
  redis.call("SET", KEYS[1], left)
end
return 1

--[[ trim.lua: remove the dead letters past their retention, and keep the stream's TTL exact.

Run on the worker's timer, so a dead letter leaves at its retention (plus at most one timer
period) even when no newer one arrives to trim it. The stream's TTL is set to when its newest
entry passes the retention: with no worker left at all, Redis still removes the stream then.

KEYS[1]  dead-letter stream
ARGV[1]  oldest dead-letter id to keep ("<epoch ms>-0"; older ones are removed)
ARGV[2]  now, epoch ms
ARGV[3]  the dead-letter retention, ms

Returns the number of dead letters removed.
]]

local removed = redis.call("XTRIM", KEYS[1], "MINID", ARGV[1])
local newest = redis.call("XREVRANGE", KEYS[1], "+", "-", "COUNT", 1)
if #newest > 0 then
  local dash = string.find(newest[1][1], "-", 1, true)
  local newest_ms = tonumber(string.sub(newest[1][1], 1, dash - 1))
  local ttl = newest_ms + tonumber(ARGV[3]) - tonumber(ARGV[2])
  if ttl < 1 then
    ttl = 1
  end
  redis.call("PEXPIRE", KEYS[1], ttl)
else
  redis.call("DEL", KEYS[1])
end
return removed

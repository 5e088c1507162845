--[[ promote.lua: move the delayed leads whose time has come to the due-retries stream.

Workers read that stream beside the new leads' stream, so due retries and first attempts both
progress. Several workers may promote at once: each lead moves once (it leaves the delayed set
in the same step).

KEYS[1]  delayed: sorted set, lead id -> due time (epoch ms)
KEYS[2]  waiting: hash, lead id -> packed entry
KEYS[3]  due-retries stream (entries have one field, "p": the packed entry)
ARGV[1]  now, epoch ms
ARGV[2]  at most this many leads

Returns the number of leads moved.
]]

local due = redis.call("ZRANGEBYSCORE", KEYS[1], "-inf", ARGV[1], "LIMIT", 0, ARGV[2])
for _, lead in ipairs(due) do
  local packed = redis.call("HGET", KEYS[2], lead)
  if packed then
    redis.call("XADD", KEYS[3], "*", "p", packed)
  end
  redis.call("ZREM", KEYS[1], lead)
  redis.call("HDEL", KEYS[2], lead)
end
return #due

--[[ replay.lua: move dead letters back to the due-retries stream, each at most once.

A dead letter leaves the dead-letter stream in the same step as it enters the due stream, so
two replays of the same lead at once deliver it once.

KEYS[1]  dead-letter stream
KEYS[2]  due-retries stream (entries have one field, "p": the packed entry)
KEYS[3]  age: sorted set, lead id -> acceptance time (epoch ms), of leads between attempts
ARGV     4 per dead letter: its entry id, lead id, acceptance time (epoch ms), packed entry

Returns the number of leads moved.
]]

local moved = 0
for i = 1, #ARGV, 4 do
  if redis.call("XDEL", KEYS[1], ARGV[i]) == 1 then
    redis.call("XADD", KEYS[2], "*", "p", ARGV[i + 3])
    redis.call("ZADD", KEYS[3], ARGV[i + 2], ARGV[i + 1])
    moved = moved + 1
  end
end
return moved

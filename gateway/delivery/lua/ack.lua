--[[ ack.lua: settle many delivered entries of one stream at once ("delivered means gone").

Each entry is acknowledged and deleted, and its lead leaves the age index. An entry that was
no longer pending (another worker settled it first) is left alone: its slot in the reply is 0.

KEYS[1]  the stream the entries were read from (new leads or due retries)
KEYS[2]  age: sorted set, lead id -> acceptance time (epoch ms), of leads between attempts
ARGV[1]  consumer group
ARGV[2 ..] entry id, lead id, entry id, lead id, ...

Returns one 1 (settled) or 0 (no longer pending) per entry, in order.
]]

local settled = {}
for i = 2, #ARGV, 2 do
  if redis.call("XACK", KEYS[1], ARGV[1], ARGV[i]) == 1 then
    redis.call("XDEL", KEYS[1], ARGV[i])
    redis.call("ZREM", KEYS[2], ARGV[i + 1])
    settled[#settled + 1] = 1
  else
    settled[#settled + 1] = 0
  end
end
return settled

--[[ expire.lua: move undelivered leads past the maximum lead age to the dead letters, at once.

For an advertiser no worker delivers to (no endpoint, or the endpoint disabled), whose leads
no read would ever age out: the caller scans the queue, picks the leads older than the
maximum age and hands them here. A stream entry is acknowledged before it is deleted, so one
pending with a worker leaves its pending list and that worker's settle does nothing. A lead
already gone since the caller read it (settled, promoted, erased) is left alone.

KEYS[1]  new-leads stream
KEYS[2]  due-retries stream
KEYS[3]  dead-letter stream
KEYS[4]  delayed: sorted set, lead id -> due time (epoch ms)
KEYS[5]  waiting: hash, lead id -> packed entry (the leads in KEYS[4])
KEYS[6]  age: sorted set, lead id -> acceptance time (epoch ms), of leads between attempts
ARGV[1]  consumer group
ARGV[2]  oldest dead-letter id to keep ("<epoch ms>-0"; older ones are trimmed)
ARGV[3]  the dead-letter retention, ms: the dead-letter stream's TTL
ARGV[4 ..] 21 per lead: place ("new" | "due" | "waiting"), stream entry id ("" for
         "waiting"), lead id, then the dead letter's 9 fields as field, value, ...

Returns the number of leads moved.
]]

local moved = 0
for i = 4, #ARGV, 21 do
  local place, entry, lead = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local gone = 0
  if place == "new" or place == "due" then
    local stream = KEYS[1]
    if place == "due" then
      stream = KEYS[2]
    end
    redis.call("XACK", stream, ARGV[1], entry)
    gone = redis.call("XDEL", stream, entry)
  elseif place == "waiting" then
    gone = redis.call("HDEL", KEYS[5], lead)
    redis.call("ZREM", KEYS[4], lead)
  end
  if gone == 1 then
    redis.call("ZREM", KEYS[6], lead)
    local fields = {}
    for j = i + 3, i + 20 do
      fields[#fields + 1] = ARGV[j]
    end
    redis.call("XADD", KEYS[3], "*", unpack(fields))
    moved = moved + 1
  end
end
if moved > 0 then
  redis.call("XTRIM", KEYS[3], "MINID", ARGV[2])
  redis.call("PEXPIRE", KEYS[3], ARGV[3])
end
return moved

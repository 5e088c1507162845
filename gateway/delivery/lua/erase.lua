--[[ erase.lua: remove the given leads from every place of one advertiser's queue, at once.

Used by erasure (a person asks to be forgotten): the caller scans the queue in chunks, finds
the person's leads, and removes each chunk's finds here. A stream entry is acknowledged before
it is deleted, so one in flight leaves the pending list and its worker's settle does nothing
(settle.lua and ack.lua stop when XACK answers 0). An entry or lead already gone (a worker
settled it, the promoter moved it, since the caller read it) counts 0: the caller's next pass
finds it where it went.

KEYS[1]  new-leads stream
KEYS[2]  due-retries stream
KEYS[3]  dead-letter stream
KEYS[4]  delayed: sorted set, lead id -> due time (epoch ms)
KEYS[5]  waiting: hash, lead id -> packed entry (the leads in KEYS[4])
KEYS[6]  age: sorted set, lead id -> acceptance time (epoch ms), of leads between attempts
ARGV[1]  consumer group
ARGV[2 ..] 3 per lead: place ("new" | "due" | "dead" | "waiting"), stream entry id (""
         for "waiting"), lead id

Returns {undelivered leads removed, dead letters removed}.
]]

local undelivered, dead = 0, 0
for i = 2, #ARGV, 3 do
  local place, entry, lead = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if place == "new" or place == "due" then
    local stream = KEYS[1]
    if place == "due" then
      stream = KEYS[2]
    end
    redis.call("XACK", stream, ARGV[1], entry)
    if redis.call("XDEL", stream, entry) == 1 then
      undelivered = undelivered + 1
      if place == "due" then
        redis.call("ZREM", KEYS[6], lead)
      end
    end
  elseif place == "dead" then
    dead = dead + redis.call("XDEL", KEYS[3], entry)
  elseif place == "waiting" then
    if redis.call("HDEL", KEYS[5], lead) == 1 then
      redis.call("ZREM", KEYS[4], lead)
      redis.call("ZREM", KEYS[6], lead)
      undelivered = undelivered + 1
    end
  end
end
return {undelivered, dead}

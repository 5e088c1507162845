--[[ settle.lua: finish one pending entry of an advertiser's delivery queue, all or nothing.

The entry is acknowledged and deleted from the stream it was read from ("delivered means
gone"), and, by mode, parked in the delayed set for a later attempt or moved to the
dead-letter stream. If the entry is no longer pending (another worker that reclaimed it
settled it first), nothing changes, so a lead is never parked or dead-lettered twice.

KEYS[1]  the stream the entry was read from (new leads or due retries)
KEYS[2]  delayed: sorted set, lead id -> due time (epoch ms)
KEYS[3]  waiting: hash, lead id -> packed entry (the leads in KEYS[2])
KEYS[4]  age: sorted set, lead id -> acceptance time (epoch ms), of leads between attempts
KEYS[5]  dead-letter stream
ARGV[1]  consumer group
ARGV[2]  stream entry id
ARGV[3]  lead id
ARGV[4]  mode: "done" | "later" | "dead"
later:   ARGV[5] due time (epoch ms), ARGV[6] acceptance time (epoch ms), ARGV[7] packed entry
dead:    ARGV[5] oldest dead-letter id to keep ("<epoch ms>-0"; older ones are trimmed),
         ARGV[6] the dead-letter retention, ms: the stream's TTL (its newest entry is this
         one, so the whole stream is past its retention when the TTL ends),
         ARGV[7 ..] field, value, field, value ... of the dead letter

Returns 1 when settled, 0 when the entry was no longer pending (nothing changed).
]]

if redis.call("XACK", KEYS[1], ARGV[1], ARGV[2]) == 0 then
  return 0
end
redis.call("XDEL", KEYS[1], ARGV[2])
local mode = ARGV[4]
if mode == "later" then
  redis.call("ZADD", KEYS[2], ARGV[5], ARGV[3])
  redis.call("HSET", KEYS[3], ARGV[3], ARGV[7])
  redis.call("ZADD", KEYS[4], ARGV[6], ARGV[3])
  return 1
end
redis.call("ZREM", KEYS[4], ARGV[3])
if mode == "dead" then
  local fields = {}
  for i = 7, #ARGV do
    fields[#fields + 1] = ARGV[i]
  end
  redis.call("XADD", KEYS[5], "*", unpack(fields))
  redis.call("XTRIM", KEYS[5], "MINID", ARGV[5])
  redis.call("PEXPIRE", KEYS[5], ARGV[6])
end
return 1

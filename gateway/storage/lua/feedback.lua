--[[ feedback.lua: record one advertiser's verdict on one of its accepted leads, once.

Both keys carry the advertiser's hash tag (the lead id is looked up in the advertiser's own
slot: another advertiser's lead id is simply not there).

KEYS[1]  the lead-id index written by decide.lua at acceptance (string
         "partner|campaign|channel|accepted_ms|return_until_ms|feedback_until_ms", TTL: the
         feedback window; the deadlines are checked too, against ARGV[1])
KEYS[2]  set of the statuses already recorded for the lead (same TTL as the index)
ARGV[1]  now, epoch ms
ARGV[2]  status: "converted" | "returned" | "rejected"

Returns {result, index value}: result is "unknown" (no such lead for this advertiser, or its
feedback window is over; index value ""), "window" (a return after the return window),
"repeat" (this status was recorded before) or "ok" (recorded now).
]]

local index = redis.call("GET", KEYS[1])
if not index then
  return {"unknown", ""}
end
local now = tonumber(ARGV[1])
local return_until, feedback_until = string.match(index, "([^|]*)|([^|]*)$")
if now > tonumber(feedback_until) then
  return {"unknown", ""}
end
if ARGV[2] == "returned" then
  if now > tonumber(return_until) then
    return {"window", index}
  end
end
if redis.call("SADD", KEYS[2], ARGV[2]) == 0 then
  return {"repeat", index}
end
local ttl = redis.call("PTTL", KEYS[1])
if ttl > 0 then
  redis.call("PEXPIRE", KEYS[2], ttl)
end
return {"ok", index}

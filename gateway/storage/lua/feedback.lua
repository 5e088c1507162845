--[[ feedback.lua: record one advertiser's verdict on one of its accepted leads, once.

Every key carries the advertiser's hash tag (the lead id is looked up in the advertiser's own
slot: another advertiser's lead id is simply not there).

KEYS[1]  the lead index hash of the lead id's week and bucket, written by decide.lua at
         acceptance (field: the id less its week's time bits; value: route code * 1024 + 512 +
         ms from the id's time to the acceptance, or the text "route|accepted_ms")
KEYS[2]  that week's route registry (hash code -> "partner|campaign|channel|return_window_ms|
         feedback_window_ms")
KEYS[3]  the previous layout's index of the lead (string "partner|campaign|channel|
         accepted_ms|return_until_ms|feedback_until_ms"), read when KEYS[1] has no entry
KEYS[4]  set of the statuses already recorded for the lead (expires with its feedback window)
ARGV[1]  now, epoch ms
ARGV[2]  status: "converted" | "returned" | "rejected"
ARGV[3]  the lead id's field in KEYS[1]
ARGV[4]  the lead id's time, epoch ms

Returns {result, index value}: result is "unknown" (no such lead for this advertiser, or its
feedback window is over; index value ""), "window" (a return after the return window),
"repeat" (this status was recorded before) or "ok" (recorded now). The index value is
"partner|campaign|channel|accepted_ms|return_until_ms|feedback_until_ms" whichever layout
held it.
]]

local index
local value = redis.call("HGET", KEYS[1], ARGV[3])
if value then
  local route, accepted
  if string.find(value, "|", 1, true) then
    route, accepted = string.match(value, "^(.*)|(%d+)$")
    accepted = tonumber(accepted)
  else
    local packed = tonumber(value)
    route = redis.call("HGET", KEYS[2], tostring(math.floor(packed / 1024)))
    accepted = tonumber(ARGV[4]) + packed % 1024 - 512
  end
  if route then
    local who, return_ms, feedback_ms = string.match(route, "^(.*)|(%d+)|(%d+)$")
    index = string.format("%s|%.0f|%.0f|%.0f", who, accepted, accepted + tonumber(return_ms),
      accepted + tonumber(feedback_ms))
  end
else
  index = redis.call("GET", KEYS[3])
end
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
if redis.call("SADD", KEYS[4], ARGV[2]) == 0 then
  return {"repeat", index}
end
redis.call("PEXPIRE", KEYS[4], tonumber(feedback_until) - now + 1)
return {"ok", index}

--[[ decide.lua: check every dedup scope and cap of each lead, then commit all or nothing.

Decides one or more leads of one advertiser, in order, each as if alone: the second sees what
the first committed (a batch's leads one after the other, as documented). All keys share the
advertiser's hash tag, so this runs unchanged on Redis Cluster. A batch in one call costs
Redis and the gateway one command instead of one per lead. The caller
does the arithmetic (TTLs, packed values): a Lua number turned into a command argument costs
Redis a "%.17g" formatting and a big number parsed with tonumber() a strtod, together about a
quarter of this script's instructions before they were moved out. The numbers the script
only computes and compares with come packed in one argument (NUM, below): each argument
costs Redis ~950 instructions (read from the command, made a Lua string) and each
tonumber() ~730, and the packed ones cost neither (BENCHMARKS.md, "The numbers packed").

ARGV[1] is the number of leads; each lead then has 2 ARGV, its number of KEYS and of ARGV,
followed by its own ARGV, and its KEYS follow the previous lead's. Below, KEYS[i] and ARGV[i]
are a lead's own, numbered from 1.

KEYS[1]                      idempotency answer (string "digest|lead_id|decision|reasons");
                             read and written only when ARGV[4] ~= "0"
KEYS[2]                      the advertiser's delivery stream
KEYS[3 .. 2+d]               dedup memory (d: the sum of every check's n_keys + n_legacy): each
                             check's hashes, one per generation its window reaches, newest
                             (the current generation) first, then the legacy layout's
                             (weekly) hashes its window still reaches, newest first; field:
                             the mark, value: the acceptance time in ms since the generation
                             began
KEYS[3+d .. 2+d+n_caps]      caps: string counter (calendar window) or sorted set of lead ids
                             scored by epoch ms (rolling window)
KEYS[3+d+n_caps], +1         optional: the lead index (a hash by week and bucket of the lead
                             id; field: the id less its week's time bits; value: code *
                             1024 + 512 + offset ms, or the whole "route|accepted_ms" text)
                             and the week's route registry (hash code -> route text); written
                             when accepted
then, only for a lead with holds (ARGV[3] of two characters), last:
  n_held keys                the holds of the caps that have them (sorted sets: ping id ->
                             the hold's end, epoch ms), in the order of their cap numbers
                             below; a hold is live while its end is after now
  1 key (ping, post)         the ping's record (string "<expires ms>|...", then "used")
ARGV[1]  now, epoch ms
ARGV[2]  lead id
ARGV[3]  "0", or "1": test mode, check only and write nothing. A lead with holds has two
         characters: test mode ("0"/"1"), then "p" (a plain post: live holds count as used),
         "t" (a ping: decide as in test mode, then, if accepted, hold a place on each cap
         with holds and store the record) or "c" (a post naming a ping: its own live hold
         counts for it, and is used up, whatever the answer)
ARGV[4]  idempotency answer TTL, ms ("0": the request has no Idempotency-Key)
ARGV[5]  the request body digest (idempotency)
ARGV[6]  forced outcome from the person's slot, "decision|reason,reason", or ""
ARGV[7]  delivery record (JSON) appended to the stream when accepted
ARGV[8]  a new mark's value: now - the current generation's start, ms
ARGV[9]  the lead's numbers, little-endian doubles (struct.unpack: no strtod, no Lua string
         each; integers all, exact below 2^53), NUM[1 ..]:
           1 n_dedup, 2 n_caps, 3 a generation's length (ms), 4 the current generation
           (now // generation length), 5 a legacy generation's length (ms), 6 the newest
           legacy generation read (its first hash of each check), 7 n_strings;
           then 7 per dedup check: window ms, the TTL in ms the current generation's hash
           needs (its end + the rule's retention - now), n_keys, n_legacy, remember (1/0),
           its reason's and its mark's (the field's) numbers among the strings below;
           then 3 per cap key: limit, span ms (calendar: TTL; rolling: window), rolling (1/0);
           then, with the index keys, the TTL in ms the index hash needs
then n_strings strings: the checks' reasons and marks, each once (a lead's checks are its
         identities in each scope: two scopes of two identities name 2 reasons and 2 marks,
         where one argument per check's reason and mark took 8; each argument costs Redis
         about a thousand instructions)
then 1 per cap key: its reason
then, with the index keys: field, packed value ("" when the offset does not fit), route code,
         route text
then, only for a lead with holds, last: the number (1 ..) of each cap with holds, in order;
         for a ping or a post naming one, 5 more: ping id, the hold's end (epoch ms), the
         holds' TTL in ms (the hold's end - now; only ever raised), the record, the record's
         TTL in ms; and last of all n_held

Holds cost nothing to a lead without them: its ARGV[3] is one character and nothing of the
above is read. A ping's hold is taken on every cap that has holds, after removing the holds
that ended (ZREMRANGEBYSCORE); nothing else is written for a ping (no mark, no count, no
stream entry, no index). A post naming a live ping counts each cap as used + live holds - its
own hold, then uses it up: its holds removed, its record set to "used" (its TTL kept), so a
second post naming it finds "used"; atomic, so of two such posts exactly one has the hold.

An expiry that must only ever move later (a dedup hash, the lead index and its registry) is
raised to the TTL it needs plus EXPIRY_SLACK_MS, and only when PTTL is below what it needs: the
next leads of the generation then find it long enough and leave it (a PTTL each), where
raising it to exactly what it needs had every lead raise it again by a millisecond or two (a
PEXPIRE each). Such a key lives at most a minute longer than it must.

Returns, per lead: {"ok", decision, "reason,reason"} (a ping or a post naming one: a fourth
element, the ping's status: held, committed, released, expired, used, unknown, or "" for a
ping refused) | {"replay", stored answer} | {"conflict"}
]]

local EXPIRY_SLACK_MS = 60000

local function decide(kb, ab, nk, na)
  local lead_id = ARGV[ab + 2]
  local mode = ARGV[ab + 3]
  local dry = mode == "1"
  local idem = ARGV[ab + 4] ~= "0"
  local digest = ARGV[ab + 5]

  -- Holds: the lead's last KEYS and ARGV (see above), read only for a lead that has them.
  local holding, held, n_hold_keys = nil, nil, 0
  local ping, record_key, own, ping_status = nil, nil, false, ""
  if #mode > 1 then
    dry = string.sub(mode, 1, 1) == "1"
    holding = string.sub(mode, 2, 2)
    local n_held = tonumber(ARGV[ab + na])
    local n_fixed = 0
    if holding ~= "p" then
      n_fixed = 5
      ping, record_key = ARGV[ab + na - 5], KEYS[kb + nk]
    end
    n_hold_keys = n_held + (n_fixed > 0 and 1 or 0)
    local first_key, first_arg = kb + nk - n_hold_keys, ab + na - 1 - n_fixed - n_held
    held = {}
    for i = 1, n_held do
      held[tonumber(ARGV[first_arg + i])] = KEYS[first_key + i]
    end
  end

  if idem then
    local stored = redis.call("GET", KEYS[kb + 1])
    if stored then
      if string.sub(stored, 1, #digest + 1) == digest .. "|" then
        return {"replay", stored}
      end
      return {"conflict"}
    end
  end

  -- A post naming a ping: what its record says. Only a live hold is the post's own.
  if holding == "c" then
    local record = redis.call("GET", record_key)
    if not record then
      ping_status = "unknown"
    elseif record == "used" then
      ping_status = "used"
    elseif tonumber(string.match(record, "^%d+") or "0") > tonumber(ARGV[ab + 1]) then
      own = true
    else
      ping_status = "expired"
      if not dry then
        for _, key in pairs(held) do
          redis.call("ZREM", key, ping)
        end
      end
    end
  end

  local function answer(decision, reasons)
    if own then
      -- Whatever the answer, the hold is used up: counted (accepted) or given back.
      ping_status = decision == "accepted" and "committed" or "released"
      if not dry then
        for _, key in pairs(held) do
          redis.call("ZREM", key, ping)
        end
        redis.call("SET", record_key, "used", "KEEPTTL")
      end
    end
    if idem and not dry then
      local stored = digest .. "|" .. lead_id .. "|" .. decision .. "|" .. reasons
      if ping_status ~= "" then
        stored = stored .. "||" .. ping_status
      end
      redis.call("SET", KEYS[kb + 1], stored, "PX", ARGV[ab + 4])
    end
    if ping then
      return {"ok", decision, reasons, ping_status}
    end
    return {"ok", decision, reasons}
  end

  if ARGV[ab + 6] ~= "" then
    local bar = string.find(ARGV[ab + 6], "|", 1, true)
    return answer(string.sub(ARGV[ab + 6], 1, bar - 1), string.sub(ARGV[ab + 6], bar + 1))
  end

  local numbers = ARGV[ab + 9]
  local num = {struct.unpack("<" .. string.rep("d", #numbers / 8), numbers)}
  local n_dedup, n_caps = num[1], num[2]

  -- Dedup: a match on any identity in any scope is a duplicate; each scope is reported once,
  -- so a scope already found needs no more lookups. Times are only worked out for a mark found.
  local dup, dup_seen = {}, {}
  -- Each check's first key (its current generation's hash), for the commit below.
  local firsts = {}
  -- ARGV[strings + s]: the lead's s-th string (its checks' reasons and marks).
  local strings = ab + 9
  local k = 3
  for i = 1, n_dedup do
    local n = 7 + (i - 1) * 7
    local reason, n_keys, n_legacy = ARGV[strings + num[n + 6]], num[n + 3], num[n + 4]
    firsts[i] = k
    if not dup_seen[reason] then
      local field = ARGV[strings + num[n + 7]]
      for g = 0, n_keys + n_legacy - 1 do
        local offset = redis.call("HGET", KEYS[kb + k + g], field)
        if offset then
          local began
          if g < n_keys then
            began = (num[4] - g) * num[3]
          else
            began = (num[6] - (g - n_keys)) * num[5]
          end
          if tonumber(ARGV[ab + 1]) - (began + tonumber(offset)) < num[n + 1] then
            dup_seen[reason] = true
            dup[#dup + 1] = reason
            break
          end
        end
      end
    end
    k = k + n_keys + n_legacy
  end
  if #dup > 0 then
    return answer("duplicate", table.concat(dup, ","))
  end

  local n_dedup_keys = k - 3
  local cap_base, cap_nums = strings + num[7], 7 + n_dedup * 7
  local capped = {}
  for j = 1, n_caps do
    local n = cap_nums + (j - 1) * 3
    local key = KEYS[kb + 2 + n_dedup_keys + j]
    local used
    if num[n + 3] == 1 then
      used = redis.call("ZCOUNT", key, "(" .. (tonumber(ARGV[ab + 1]) - num[n + 2]), "+inf")
    else
      used = tonumber(redis.call("GET", key) or "0")
    end
    if held and held[j] then
      -- Live holds count as used, but for a post its own (the room it holds is its).
      local holds = held[j]
      used = used + redis.call("ZCOUNT", holds, "(" .. ARGV[ab + 1], "+inf")
      if own then
        local ends = redis.call("ZSCORE", holds, ping)
        if ends and tonumber(ends) > tonumber(ARGV[ab + 1]) then
          used = used - 1
        end
      end
    end
    if used >= num[n + 1] then
      capped[#capped + 1] = ARGV[cap_base + j]
    end
  end
  if #capped > 0 then
    return answer("capped", table.concat(capped, ","))
  end

  if holding == "t" then
    -- A ping: hold a place on each cap with holds until the hold ends, and leave the
    -- record for its post. Ended holds go first, so a set holds no more than live pings.
    ping_status = "held"
    if not dry then
      local ends, ttl = ARGV[ab + na - 4], tonumber(ARGV[ab + na - 3])
      for _, key in pairs(held) do
        redis.call("ZREMRANGEBYSCORE", key, "-inf", ARGV[ab + 1])
        redis.call("ZADD", key, ends, ping)
        if redis.call("PTTL", key) < ttl then
          redis.call("PEXPIRE", key, ttl)
        end
      end
      redis.call("SET", record_key, ARGV[ab + na - 2], "PX", ARGV[ab + na - 1])
    end
    return answer("accepted", "")
  end

  if dry then
    return answer("accepted", "")
  end

  -- Every check passed: commit everything. A generation's hash lives until the generation ends
  -- plus the longest retention of any mark written to it: campaigns with shorter windows share
  -- the advertiser-wide scope, so an expiry is only ever moved later.
  for i = 1, n_dedup do
    local n = 7 + (i - 1) * 7
    if num[n + 5] == 1 then
      local key = KEYS[kb + firsts[i]]
      redis.call("HSET", key, ARGV[strings + num[n + 7]], ARGV[ab + 8])
      local ttl = num[n + 2]
      if redis.call("PTTL", key) < ttl then
        redis.call("PEXPIRE", key, ttl + EXPIRY_SLACK_MS)
      end
    end
  end
  for j = 1, n_caps do
    local n = cap_nums + (j - 1) * 3
    local span = num[n + 2]
    local key = KEYS[kb + 2 + n_dedup_keys + j]
    if num[n + 3] == 1 then
      redis.call("ZREMRANGEBYSCORE", key, "-inf", tonumber(ARGV[ab + 1]) - span)
      redis.call("ZADD", key, ARGV[ab + 1], lead_id)
      redis.call("PEXPIRE", key, span)
    elseif redis.call("INCR", key) == 1 then
      redis.call("PEXPIRE", key, span)
    end
  end
  local index_at = 2 + n_dedup_keys + n_caps + 1
  if nk - n_hold_keys > index_at then
    -- The lead index: the packed integer when the route's code is this route's in the week's
    -- registry and the acceptance is within 512 ms of the id's time (nearly always), else the
    -- text.
    local a = cap_base + n_caps
    local index, routes = KEYS[kb + index_at], KEYS[kb + index_at + 1]
    local packed, code, route = ARGV[a + 2], ARGV[a + 3], ARGV[a + 4]
    local ttl = num[cap_nums + n_caps * 3 + 1]
    local held = redis.call("HGET", routes, code)
    local registered = false
    if not held then
      redis.call("HSET", routes, code, route)
      held, registered = route, true
    end
    if held == route and packed ~= "" then
      redis.call("HSET", index, ARGV[a + 1], packed)
    else
      redis.call("HSET", index, ARGV[a + 1], route .. "|" .. ARGV[ab + 1])
    end
    -- Until the later of the week's end and now, plus the feedback window; only ever later,
    -- and the registry outlives every bucket that refers to it.
    local raised = redis.call("PTTL", index) < ttl
    if raised then
      redis.call("PEXPIRE", index, ttl + EXPIRY_SLACK_MS)
    end
    if (raised or registered) and redis.call("PTTL", routes) < ttl + EXPIRY_SLACK_MS then
      redis.call("PEXPIRE", routes, ttl + EXPIRY_SLACK_MS)
    end
  end
  redis.call("XADD", KEYS[kb + 2], "*", "lead_id", lead_id, "accepted_at_ms", ARGV[ab + 1],
    "record", ARGV[ab + 7])
  return answer("accepted", "")
end

local results = {}
local kb, ab = 0, 1
for lead = 1, tonumber(ARGV[1]) do
  local nk, na = tonumber(ARGV[ab + 1]), tonumber(ARGV[ab + 2])
  results[lead] = decide(kb, ab + 2, nk, na)
  kb, ab = kb + nk, ab + 2 + na
end
return results

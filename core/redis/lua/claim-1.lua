--[[
  claim: lease up to `count` claimable tasks to an agent. Expired leases and ended
  backoffs are handled first, and bidding windows whose time is up are closed, so recovery
  never waits for a separate reaper (lib.lua sweep_due: only when `due` says something
  fell due, one command otherwise).
  Order: claims the agent won in an auction and was not handed yet, then tasks reassigned
  to this agent by an operator, then highest priority, then oldest, over the chosen queues
  (all when none given) and the tasks waiting for this agent as their affinity owner
  (lib.lua route; others' such tasks only once their steal time passed), skipping paused queues and tasks
  needing a capability the agent lacks. An unknown agent is registered with no
  capabilities and the default capacity.
  Bounded work (rule 10): it looks at the signatures in use (at most ${max_capsigs}) that
  the agent can take, one head index each, never at the queues one by one; at most
  ${claim_batch_max} tasks per call (the caller loops for more).
  KEYS[1] `events`, the audit stream
  ARGV[1] prefix P   ARGV[2] agent   ARGV[3] lease ttl ms   ARGV[4] queues "a,b" or ""
  ARGV[5] count
  Touches P .. affine:<agent>, agent:<name>, agents, assigned:<agent>, auctions, backoff,
    bids:<id>, capsigs:<queue>, cascaded:<id>, cascades:cancel, cascades:restore,
    children:<id>:<token>, deadlines, dependents:<id>, due, epoch, finished:<kind>:<queue>,
    heads:<sig>, held:<agent>, live, lock:<path>, lockpaths, locks, paused, queues,
    ready:<queue>:<sig>, retention:due, retention:held, ring, seq:finished, seq:token, sigs,
    state:<state>, steal, task:<id>, taskevents:<id>, tasklocks:<id>, won:<agent>
  Publishes on P .. claimable, hints, wake:<agent>
  Returns {0, task fields (flat)...} one entry per claimed task;
          {1, reason, next_change_in_ms, caps}: nothing claimable; reason is empty |
          at-capacity | breaker-open; next_change_in_ms is how long until a lease or
          backoff next ends, an affine task becomes anyone's, or the breaker closes (-1 if nothing is scheduled); caps the
          agent's capabilities "a,b" (what a waiting claimer can take).
]]
--@include lib
local P, agent = ARGV[1], ARGV[2]
local ttl, count = tonumber(ARGV[3]), math.min(tonumber(ARGV[5]), ${claim_batch_max})
local now = now_ms()
sweep_due(P, now)

local ak = P .. 'agent:' .. agent
-- The four fields a claim reads, not the whole record.
local af = rcall('HMGET', ak, 'name', 'caps', 'max_claims', 'breaker_open_until_ms')
local a = {name = af[1], caps = af[2], max_claims = af[3], breaker_open_until_ms = af[4]}
if not a.name then
  a = {name = agent, caps = '', max_claims = ${default_max_claims}}
  -- auto: retention removes it once it holds nothing and was not seen for a while.
  rcall('HSET', ak, 'name', agent, 'caps', '', 'max_claims', a.max_claims, 'registered_ms', now, 'auto', '1')
  rcall('SADD', P .. 'agents', agent)
  audit(P, now, 'registered', '', agent, '', {auto = true})
end
touch_agent(P, agent, now)
-- Claims it won in an auction come first (already its own: no capacity or breaker check).
local won = won_claims(P, agent, count, now)
if #won > 0 then
  table.insert(won, 1, 0)
  return won
end
local open_until = tonumber(a.breaker_open_until_ms or 0)
if open_until > now then return {1, 'breaker-open', open_until - now, a.caps or ''} end
local room = tonumber(a.max_claims) - rcall('SCARD', P .. 'held:' .. agent)
if room <= 0 then
  rcall('HSET', ak, 'full', '1')  -- so the end of one of its claims says so (lib.lua leave)
  return {1, 'at-capacity', -1, a.caps or ''}
end
if count > room then count = room end

local caps = {}
for _, c in ipairs(split(a.caps)) do caps[c] = true end
local function can(sig)
  for _, c in ipairs(split(sig)) do
    if not caps[c] then return false end
  end
  return true
end
local queues = nil
if ARGV[4] ~= '' then queues = split(ARGV[4]) end

-- The best head of each signature the agent can take: {score, queue}, or false.
local sigs, best_of = {}, {}
local function look(sig)
  local pick = false
  if queues then
    local scores = rcall('ZMSCORE', P .. 'heads:' .. sig, unpack(queues))
    for i = 1, #queues do
      local sc = scores[i]
      if sc and (not pick or tonumber(sc) < pick[1]) then pick = {tonumber(sc), queues[i]} end
    end
  else
    local head = rcall('ZRANGE', P .. 'heads:' .. sig, '0', '0', 'WITHSCORES')
    if #head > 0 then pick = {tonumber(head[2]), head[1]} end
  end
  best_of[sig] = pick
end
for _, sig in ipairs(rcall('HKEYS', P .. 'sigs')) do
  if can(sig) then
    sigs[#sigs + 1] = sig
    look(sig)
  end
end

-- Affinity: the best task waiting for this agent as its owner, {score, id} or false:
-- the first of its owner index (at most ${affinity_scan_max} looked at) in a chosen, open
-- queue that it can take (its capabilities may have changed since the task was routed).
local qset = nil
if queues then
  qset = {}
  for _, q in ipairs(queues) do qset[q] = true end
end
local function own_head()
  local got = rcall('ZRANGE', P .. 'affine:' .. agent, '0', ${affinity_scan_max} - 1, 'WITHSCORES')
  for i = 1, #got, 2 do
    local f = rcall('HMGET', P .. 'task:' .. got[i], 'queue', 'requires')
    if f[1] and (not qset or qset[f[1]]) and rcall('SISMEMBER', P .. 'paused', f[1]) == 0 and can(f[2] or '') then
      return {tonumber(got[i + 1]), got[i]}
    end
  end
  return false
end

-- A claimed task's fields as HGETALL would give them, built from what was written, less
-- the empty ones (the client reads a missing field as empty: Task.from_fields). The
-- numbers written (times, token, attempts) go back as integer replies: formatting them as
-- text here cost Redis ~2k instructions each, and each reply element ~1k.
local function fields_of(t)
  local flat = {}
  for k, v in pairs(t) do
    if v ~= '' then
      flat[#flat + 1] = k
      flat[#flat + 1] = v
    end
  end
  return flat
end

local out = {0}
while #out - 1 < count do
  local best, from
  local mine = rcall('ZRANGE', P .. 'assigned:' .. agent, '0', '0')
  if #mine > 0 then
    best = mine[1]
  else
    local top
    for _, sig in ipairs(sigs) do
      local c = best_of[sig]
      if c and (not top or c[1] < top[1]) then top, from = c, sig end
    end
    local own = own_head()
    if own and (not top or own[1] < top[1]) then
      best, from = own[2], nil  -- leave takes it out of the owner index
    elseif not top then
      break
    else
      -- The head leaves its ready set here (leave is told so): one command for both.
      best = rcall('ZPOPMIN', P .. 'ready:' .. top[2] .. ':' .. from)[1]
      if not best then  -- a head without a task (never left so by the helpers): drop it
        rcall('ZREM', P .. 'heads:' .. from, top[2])
      end
    end
  end
  local t = best and load_task(P, best)
  if best and not t and not from then rcall('ZREM', P .. 'affine:' .. agent, best) end
  if t then
    leave(P, best, t, from ~= nil)
    local token = next_token(P, now)
    local attempts = tonumber(t.attempts or 0) + 1
    t.agent, t.deadline_ms = agent, now + ttl
    enter(P, best, t, 'claimed', now, {'agent', agent, 'token', token, 'deadline_ms', t.deadline_ms,
      'claimed_ms', ms(now), 'ttl_ms', ttl, 'attempts', attempts, 'assigned', ''})
    audit(P, now, 'claimed', best, agent, token, {deadline_ms = t.deadline_ms, attempt = attempts})
    out[#out + 1] = fields_of(t)
  end
  if from and #out - 1 < count then look(from) end
end
if #out > 1 then return out end

local next_change = -1
for _, key in ipairs({P .. 'deadlines', P .. 'backoff', P .. 'steal'}) do
  local head = rcall('ZRANGE', key, '0', '0', 'WITHSCORES')
  if #head > 0 then
    local wait = math.max(0, tonumber(head[2]) - now)
    if next_change < 0 or wait < next_change then next_change = wait end
  end
end
return {1, 'empty', next_change, a.caps or ''}

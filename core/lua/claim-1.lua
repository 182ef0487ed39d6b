--[[
  claim: lease up to `count` claimable tasks to an agent. Expired leases and ended
  backoffs are handled first, so recovery never waits for a separate reaper.
  Order: tasks reassigned to this agent by an operator, then highest priority, then
  oldest, over the chosen queues (all when none given), skipping paused queues and tasks
  needing a capability the agent lacks. An unknown agent is registered with no
  capabilities and the default capacity.
  KEYS[1] audit stream
  ARGV[1] prefix P   ARGV[2] agent   ARGV[3] lease ttl ms   ARGV[4] queues "a,b" or ""
  ARGV[5] count
  Returns {0, task fields (flat)...} one entry per claimed task;
          {1, reason, next_change_in_ms}: nothing claimable; reason is empty | at-capacity |
          breaker-open; next_change_in_ms is how long until a lease or backoff next ends or
          the breaker closes (-1 if nothing is scheduled).
]]
--@include lib
local P, agent = ARGV[1], ARGV[2]
local ttl, count = tonumber(ARGV[3]), tonumber(ARGV[5])
local now = now_ms()
reap_due(P, now)
promote_due(P, now)

local ak = P .. 'agent:' .. agent
local a = to_table(rcall('HGETALL', ak))
if not a.name then
  a = {name = agent, caps = '', max_claims = ${default_max_claims}}
  -- auto: retention removes it once it holds nothing and was not seen for a while.
  rcall('HSET', ak, 'name', agent, 'caps', '', 'max_claims', a.max_claims, 'registered_ms', now, 'auto', 1)
  rcall('SADD', P .. 'agents', agent)
  audit(P, now, 'registered', '', agent, '', {auto = true})
end
touch_agent(P, agent, now)
local open_until = tonumber(a.breaker_open_until_ms or 0)
if open_until > now then return {1, 'breaker-open', open_until - now} end
local room = tonumber(a.max_claims) - rcall('SCARD', P .. 'held:' .. agent)
if room <= 0 then return {1, 'at-capacity', -1} end
if count > room then count = room end

local caps = {}
for _, c in ipairs(split(a.caps)) do caps[c] = true end
local function can(sig)
  for _, c in ipairs(split(sig)) do
    if not caps[c] then return false end
  end
  return true
end
local queues
if ARGV[4] ~= '' then queues = split(ARGV[4]) else queues = rcall('SMEMBERS', P .. 'queues') end
local open = {}
for _, q in ipairs(queues) do
  if rcall('SISMEMBER', P .. 'paused', q) == 0 then open[#open + 1] = q end
end

local out = {0}
while #out - 1 < count do
  local best, best_score
  local mine = rcall('ZRANGE', P .. 'assigned:' .. agent, 0, 0)
  if #mine > 0 then
    best = mine[1]
  else
    for _, q in ipairs(open) do
      for _, sig in ipairs(rcall('SMEMBERS', P .. 'capsigs:' .. q)) do
        if can(sig) then
          local rk = P .. 'ready:' .. q .. ':' .. sig
          local head = rcall('ZRANGE', rk, 0, 0, 'WITHSCORES')
          if #head == 0 then
            rcall('SREM', P .. 'capsigs:' .. q, sig)
          elseif not best_score or tonumber(head[2]) < best_score then
            best, best_score = head[1], tonumber(head[2])
          end
        end
      end
    end
  end
  if not best then break end
  local t = load_task(P, best)
  leave(P, best, t)
  local token = rcall('INCR', P .. 'seq:token')
  local attempts = tonumber(t.attempts or 0) + 1
  t.agent, t.deadline_ms, t.assigned = agent, now + ttl, ''
  rcall('HSET', P .. 'task:' .. best, 'agent', agent, 'token', token, 'deadline_ms', t.deadline_ms,
    'claimed_ms', now, 'ttl_ms', ttl, 'attempts', attempts, 'assigned', '')
  enter(P, best, t, 'claimed', now)
  audit(P, now, 'claimed', best, agent, token, {deadline_ms = t.deadline_ms, attempt = attempts})
  out[#out + 1] = rcall('HGETALL', P .. 'task:' .. best)
end
if #out > 1 then return out end

local next_change = -1
for _, key in ipairs({P .. 'deadlines', P .. 'backoff'}) do
  local head = rcall('ZRANGE', key, 0, 0, 'WITHSCORES')
  if #head > 0 then
    local wait = math.max(0, tonumber(head[2]) - now)
    if next_change < 0 or wait < next_change then next_change = wait end
  end
end
return {1, 'empty', next_change}

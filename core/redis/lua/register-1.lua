--[[
  register: create or update an agent with its capabilities and capacity (an agent
  registered on purpose is never removed by retention, unlike one a claim registered).
  KEYS[1] `events`, the audit stream
  ARGV[1] prefix P   ARGV[2] agent   ARGV[3] capabilities "a,b" (sorted)   ARGV[4] max claims
  ARGV[5] session (e.g. a Claude Code session id; "" none): which session the agent is
  Touches P .. agent:<name>, agents, due:at, live, ring, taskevents:<id>
  Publishes on P .. hints, wake:<agent>
  Returns {0}.
]]
--@include lib
local P, agent = ARGV[1], ARGV[2]
local now = now_ms()
local ak = P .. 'agent:' .. agent
if rcall('EXISTS', ak) == 0 then rcall('HSET', ak, 'registered_ms', now) end
rcall('HSET', ak, 'name', agent, 'caps', ARGV[3], 'max_claims', ARGV[4], 'last_seen_ms', now)
touch_agent(P, agent, now)  -- on the affinity ring
rcall('HDEL', ak, 'auto')  -- registered on purpose: kept however long it sits idle
if ARGV[5] ~= '' then rcall('HSET', ak, 'session', ARGV[5]) else rcall('HDEL', ak, 'session') end
rcall('SADD', P .. 'agents', agent)
announce(P .. 'wake:' .. agent, 'registered')  -- new capabilities or capacity
local data = {capabilities = split(ARGV[3]), max_claims = tonumber(ARGV[4])}
if ARGV[5] ~= '' then data.session = ARGV[5] end
audit(P, now, 'registered', '', agent, '', data)
return {0}

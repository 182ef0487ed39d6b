--[[
  register: create or update an agent with its capabilities and capacity (an agent
  registered on purpose is never removed by retention, unlike one a claim registered).
  KEYS[1] audit stream
  ARGV[1] prefix P   ARGV[2] agent   ARGV[3] capabilities "a,b" (sorted)   ARGV[4] max claims
  Returns {0}.
]]
--@include lib
local P, agent = ARGV[1], ARGV[2]
local now = now_ms()
local ak = P .. 'agent:' .. agent
if rcall('EXISTS', ak) == 0 then rcall('HSET', ak, 'registered_ms', now) end
rcall('HSET', ak, 'name', agent, 'caps', ARGV[3], 'max_claims', ARGV[4], 'last_seen_ms', now)
rcall('HDEL', ak, 'auto')  -- registered on purpose: kept however long it sits idle
rcall('SADD', P .. 'agents', agent)
announce(P .. 'wake:' .. agent, 'registered')  -- new capabilities or capacity
audit(P, now, 'registered', '', agent, '', {capabilities = split(ARGV[3]), max_claims = tonumber(ARGV[4])})
return {0}

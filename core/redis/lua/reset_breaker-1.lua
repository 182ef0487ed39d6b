--[[
  reset_breaker: an operator closes an agent's circuit breaker.
  KEYS[1] `events`, the audit stream
  ARGV[1] prefix P   ARGV[2] agent   ARGV[3] operator
  Touches P .. agent:<name>, taskevents:<id>
  Publishes on P .. hints, wake:<agent>
  Returns {0}; {-1, agent} when no such agent.
]]
--@include lib
local P, agent, operator = ARGV[1], ARGV[2], ARGV[3]
local now = now_ms()
local ak = P .. 'agent:' .. agent
if rcall('EXISTS', ak) == 0 then return {-1, agent} end
rcall('HSET', ak, 'consecutive_failures', '0', 'breaker_open_until_ms', '0')
announce(P .. 'wake:' .. agent, 'breaker')
audit(P, now, 'breaker-reset', '', agent, '', nil, operator)
return {0}

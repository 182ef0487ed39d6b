--[[
  alive: an agent's own liveness heartbeat, apart from any task.
  KEYS[1] `events`, the audit stream
  ARGV[1] prefix P   ARGV[2] agent
  Touches P .. agent:<name>, due:at, live, ring
  Publishes on P .. hints
  Returns {0, now_ms}; {-1, agent} when no such agent is registered.
]]
--@include lib
local P, agent = ARGV[1], ARGV[2]
if rcall('EXISTS', P .. 'agent:' .. agent) == 0 then return {-1, agent} end
local now = now_ms()
touch_agent(P, agent, now)
rcall('PUBLISH', P .. 'hints', 'alive ' .. agent)
return {0, now}

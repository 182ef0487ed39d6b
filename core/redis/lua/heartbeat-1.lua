--[[
  heartbeat: extend a live lease and record how far the work is.
  KEYS[1] `events`, the audit stream
  ARGV[1] prefix P   ARGV[2] task id   ARGV[3] token   ARGV[4] new ttl ms ("" keeps the
  claim's ttl)   ARGV[5] the agent the caller acts as ("" anyone: direct store access)
  ARGV[6..] field, value pairs among progress, stage, checkpoint
  Touches P .. affine:<agent>, agent:<name>, assigned:<agent>, auctions, backoff, bids:<id>,
    capsigs:<queue>, cascaded:<id>, cascades:cancel, cascades:restore,
    children:<id>:<token>, deadlines, dependents:<id>, due:at, finished:<kind>:<queue>,
    heads:<sig>, held:<agent>, live, lock:<path>, lockpaths, locks, paused, queues,
    ready:<queue>:<sig>, retention:due, retention:held, ring, sigs,
    state:<state>, steal, task:<id>, taskevents:<id>, tasklocks:<id>
  Publishes on P .. claimable, hints, wake:<agent>
  Returns {0, deadline_ms}; {-1, id} no such task; {-2, id} lease lost;
  {-9, 'claim', id, holder, agent} the claim is another agent's.
  Audited only when the stage changes (heartbeats are not state changes; every one is
  still announced on the hints channel for live views).
]]
--@include lib
local P, id, token = ARGV[1], ARGV[2], ARGV[3]
local now = now_ms()
local t, err = check_lease(P, id, token, now, ARGV[5])
if not t then return err end
local ttl = tonumber(ARGV[4]) or tonumber(t.ttl_ms)
local deadline = now + ttl
local fields = {'deadline_ms', deadline, 'ttl_ms', ttl, 'updated_ms', now}
local stage_changed = nil
for i = 6, #ARGV, 2 do
  fields[#fields + 1] = ARGV[i]
  fields[#fields + 1] = ARGV[i + 1]
  if ARGV[i] == 'stage' and ARGV[i + 1] ~= (t.stage or '') then stage_changed = ARGV[i + 1] end
end
rcall('HSET', P .. 'task:' .. id, unpack(fields))
rcall('ZADD', P .. 'deadlines', deadline, id)
due_at(P, deadline)
renew_task_locks(P, id, deadline)
touch_agent(P, t.agent, now)
if stage_changed then
  audit(P, now, 'stage', id, t.agent, token, {stage = stage_changed})
else
  rcall('PUBLISH', P .. 'hints', 'heartbeat ' .. id)
end
return {0, deadline}

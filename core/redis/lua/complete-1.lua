--[[
  complete: finish a claimed task, record its result, release its locks and unblock the
  tasks that waited only on it.
  KEYS[1] `events`, the audit stream
  ARGV[1] prefix P   ARGV[2] task id   ARGV[3] token   ARGV[4] result (JSON text or "")
  ARGV[5] the agent the caller acts as ("" anyone: direct store access)
  Touches P .. agent:<name>, assigned:<agent>, backoff, capsigs:<queue>, cascaded:<id>,
    cascades:cancel, cascades:restore, children:<id>:<token>, deadlines, dependents:<id>,
    finished:<kind>:<queue>, heads:<sig>, held:<agent>, lock:<path>, lockpaths, locks, paused,
    queues, ready:<queue>:<sig>, retention:due, retention:held, seq:finished, sigs,
    state:<state>, task:<id>, taskevents:<id>, tasklocks:<id>
  Publishes on P .. claimable, hints, wake:<agent>
  A plan's parent (lib's plan_complete) with unfinished subtasks waits blocked for them
  instead, or ends dead when one of them already ended dead or cancelled.
  Returns {0, unblocked ids...}; {-1, id} no such task; {-2, id} lease lost;
  {-9, 'claim', id, holder, agent} the claim is another agent's.
]]
--@include lib
local P, id, token = ARGV[1], ARGV[2], ARGV[3]
local now = now_ms()
local t, err = check_lease(P, id, token, now, ARGV[5])
if not t then return err end
leave(P, id, t)
-- A plan's parent whose planner completes it while subtasks are unfinished waits for them.
local planned = plan_complete(P, id, t, now, ARGV[4])
if not planned then enter(P, id, t, 'done', now, {'result', ARGV[4], 'progress', 1, 'reason', ''}) end
local locks = release_task_locks(P, id)
rcall('HSET', P .. 'agent:' .. t.agent, 'consecutive_failures', 0, 'last_seen_ms', now)
local out = {0}
local deps = {}
if not planned then deps = rcall('SMEMBERS', P .. 'dependents:' .. id) end
for _, d in ipairs(deps) do
  local dt = load_task(P, d)
  if dt and dt.state == 'blocked' then
    if rcall('HINCRBY', P .. 'task:' .. d, 'waiting', -1) <= 0 then
      leave(P, d, dt)
      enter(P, d, dt, 'queued', now)
      audit(P, now, 'ready', d, '', '', {after = id})
      out[#out + 1] = d
    end
  end
end
audit(P, now, 'completed', id, t.agent, token, {locks = locks, plan = planned})
if planned == 'dead' then
  audit(P, now, 'plan-dead', id, '', '', {reason = t.reason})
  cascade_cancel(P, id, now)
end
return out

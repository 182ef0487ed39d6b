--[[
  complete: finish a claimed task, record its result, release its locks and unblock the
  tasks that waited only on it; or, with a review reference, deliver it for review: the
  claim ends the same way, but the task waits in `review` (its dependents still blocked)
  until a reviewer accepts it (review-1.lua) or returns it.
  KEYS[1] `events`, the audit stream
  ARGV[1] prefix P   ARGV[2] task id   ARGV[3] token   ARGV[4] result (JSON text or "")
  ARGV[5] the agent the caller acts as ("" anyone: direct store access)
  ARGV[6] review reference (a branch, commit or PR; "" none: done at once)
  ARGV[7] "1": then claim for the agent of ARGV[5] (not "") as claim-1.lua would, with
  ARGV[8] lease ttl ms   ARGV[9] queues "a,b" or ""   ARGV[10] count; "" (or none): no claim
  Touches P .. affine:<agent>, agent:<name>, agents, assigned:<agent>, auctions, backoff,
    bids:<id>, capsigs:<queue>, cascaded:<id>, cascades:cancel, cascades:restore,
    children:<id>:<token>, deadlines, dependents:<id>, due, epoch, finished:<kind>:<queue>,
    heads:<sig>, held:<agent>, live, lock:<path>, lockpaths, locks, paused, queues,
    ready:<queue>:<sig>, retention:due, retention:held, ring, seq:finished, seq:token, sigs,
    state:<state>, steal, task:<id>, taskevents:<id>, tasklocks:<id>, won:<agent>
  Publishes on P .. claimable, hints, wake:<agent>
  A plan's parent (lib's plan_complete) with unfinished subtasks waits blocked for them
  instead, or ends dead when one of them already ended dead or cancelled.
  Returns {0, unblocked ids...}; with a claim, {0, {unblocked ids...}, what claim-1.lua
  returns}; {-1, id} no such task; {-2, id} lease lost; {-9, 'claim', id, holder, agent}
  the claim is another agent's (then nothing is claimed either).
]]
--@include lib
local P, id, token, ref = ARGV[1], ARGV[2], ARGV[3], ARGV[6] or ''
local now = now_ms()
-- Every field this path reads, here and in lib (leave, plan_complete, enter, count_sig,
-- retention_enter, plan_settle): the task is read with HMGET, not HGETALL (check_lease).
-- result and reason too: enter deletes them when this writes '' (a lean hash stores no '').
local t, err = check_lease(P, id, token, now, ARGV[5], {'state', 'token', 'agent', 'deadline_ms',
  'seq', 'queue', 'requires', 'assigned', 'plan', 'plan_failed', 'plan_left', 'reason', 'result'})
if not t then return err end
leave(P, id, t)
local out = {0}
-- A plan's parent whose planner completes it while subtasks are unfinished waits for them
-- (or dies, when one of them already died): neither done nor delivered yet.
local planned = plan_complete(P, id, t, now, ARGV[4])
local fields = {'result', ARGV[4], 'progress', 1, 'reason', ''}
if planned then
  ref = ''
elseif ref ~= '' then
  fields[#fields + 1] = 'review_ref'; fields[#fields + 1] = ref
  fields[#fields + 1] = 'review_ms'; fields[#fields + 1] = now
  enter(P, id, t, 'review', now, fields)
else
  for _, d in ipairs(finish_done(P, id, t, now, fields)) do out[#out + 1] = d end
end
local locks = release_task_locks(P, id)
rcall('HSET', P .. 'agent:' .. t.agent, 'consecutive_failures', '0', 'last_seen_ms', ms(now))
if ref ~= '' then
  audit(P, now, 'delivered', id, t.agent, token, {ref = ref, locks = locks})
else
  audit(P, now, 'completed', id, t.agent, token, {locks = locks, plan = planned})
end
if planned == 'dead' then
  audit(P, now, 'plan-dead', id, '', '', {reason = t.reason})
  cascade_cancel(P, id, now)
end
if ARGV[7] == '1' then
  -- The agent's next task in the same call: one round trip per task for a busy agent.
  sweep_due(P, now)
  table.remove(out, 1)
  return {0, out, claim_tasks(P, ARGV[5], tonumber(ARGV[8]), ARGV[9], tonumber(ARGV[10]), now)}
end
return out

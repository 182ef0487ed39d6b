--[[
  move: an operator moves a task: kill (claimed -> queued or dead), requeue (claimed,
  orphaned, retrying or dead -> queued), cancel (any non-final -> cancelled), retry
  (dead -> queued with its failure and expiry counts reset), reassign (claimed, orphaned,
  queued, retrying or dead -> queued for one named agent, who gets it on its next claim).
  A compare-and-set on the state and token the operator saw. A task that ends dead or
  cancelled takes its dependents with it (lib.lua cascade_cancel); a retry with restore
  brings back the dependents its cascade cancelled (lib.lua restore_run).
  KEYS[1] `events`, the audit stream
  ARGV[1] prefix P   ARGV[2] task id   ARGV[3] seen state   ARGV[4] seen token
  ARGV[5] action: kill | kill-dead | requeue | cancel | retry | reassign
  ARGV[6] operator   ARGV[7] agent (reassign) or ""   ARGV[8] "1": restore (retry only)
  Touches P .. affine:<agent>, agent:<name>, assigned:<agent>, auctions, backoff, bids:<id>,
    capsigs:<queue>, cascaded:<id>, cascades:cancel, cascades:restore,
    children:<id>:<token>, deadlines, dependents:<id>, due:at, finished:<kind>:<queue>,
    heads:<sig>, held:<agent>, lock:<path>, lockpaths, locks, paused, queues,
    ready:<queue>:<sig>, retention:due, retention:held, ring, sigs,
    state:<state>, steal, task:<id>, taskevents:<id>, tasklocks:<id>
  Publishes on P .. claimable, hints, wake:<agent>
  Returns {0, new state}; {-1, id} no such task (or no such agent to reassign it to);
          {-4, id} changed since seen; {-5, message} an unknown action, or a restore asked
          of another action than retry; {-7, message} the action does not apply to that state.
]]
--@include lib
local P, id, action, operator, target = ARGV[1], ARGV[2], ARGV[5], ARGV[6], ARGV[7]
local restore = ARGV[8] == '1'
local now = now_ms()
local t, err = check_seen(P, id, ARGV[3], ARGV[4])
if not t then return err end
-- Which states each action applies to and what it does: core/operator_actions.py.
local move = (${operator_moves})[action]
if not move then return {-5, 'unknown action ' .. action} end
if not move.states[t.state] then
  return {-7, (string.gsub(${wrong_state}, '{(%w+)}', {action = action, state = t.state}))}
end
if move.assigns and rcall('EXISTS', P .. 'agent:' .. target) == 0 then return {-1, target} end
if restore and not move.restores then return {-5, 'only a retry restores dependents'} end

local from, from_agent, token = t.state, t.agent, t.token
local rb = take_out(P, id, t, now)
local new = move.to
if move.reason then
  rcall('HSET', P .. 'task:' .. id, 'reason', (string.gsub(move.reason, '{(%w+)}', {operator = operator})))
end
if move.reset_counts then
  rcall('HDEL', P .. 'task:' .. id, 'failures', 'expiries')  -- back to their default 0
end
if move.assigns then
  t.assigned = target
  rcall('HSET', P .. 'task:' .. id, 'assigned', target)
end
enter(P, id, t, new, now)
audit(P, now, move.event,
  id, from_agent, token, {from = from, to = new, assigned = target, locks = rb.locks, cancelled = rb.cancelled},
  operator)
if is_over(new) then
  cascade_cancel(P, id, now)
else
  rcall('ZREM', P .. 'cascades:cancel', id)  -- alive again: what still waits on it keeps waiting
end
if restore then
  rcall('ZADD', P .. 'cascades:restore', 'NX', now, id)
  due_at(P, now)
  restore_run(P, now, id, operator)
end
return {0, new}

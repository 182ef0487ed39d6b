--[[
  release: give a claimed task back unharmed; it returns to its place in the queue and
  no attempt is counted against it. The claim is rolled back (rule 7).
  KEYS[1] `events`, the audit stream
  ARGV[1] prefix P   ARGV[2] task id   ARGV[3] token
  ARGV[4] the agent the caller acts as ("" anyone: direct store access)
  Touches P .. affine:<agent>, agent:<name>, assigned:<agent>, auctions, backoff, bids:<id>,
    capsigs:<queue>, cascaded:<id>, cascades:cancel, cascades:restore,
    children:<id>:<token>, deadlines, dependents:<id>, due:at, finished:<kind>:<queue>,
    heads:<sig>, held:<agent>, lock:<path>, lockpaths, locks, paused, queues,
    ready:<queue>:<sig>, retention:due, retention:held, ring, sigs,
    state:<state>, steal, task:<id>, taskevents:<id>, tasklocks:<id>
  Publishes on P .. claimable, hints, wake:<agent>
  Returns {0}; {-1, id} no such task; {-2, id} lease lost;
  {-9, 'claim', id, holder, agent} the claim is another agent's.
]]
--@include lib
local P, id, token = ARGV[1], ARGV[2], ARGV[3]
local now = now_ms()
local t, err = check_lease(P, id, token, now, ARGV[4])
if not t then return err end
leave(P, id, t)
local rb = rollback(P, id, t, now)
enter(P, id, t, 'queued', now)
audit(P, now, 'released', id, t.agent, token, {locks = rb.locks, cancelled = rb.cancelled})
return {0}

--[[
  complete: finish a claimed task, record its result, release its locks and unblock the
  tasks that waited only on it; or, with a review reference, deliver it for review: the
  claim ends the same way, but the task waits in `review` (its dependents still blocked)
  until a reviewer accepts it (review-1.lua) or returns it. (lib.lua complete_task.)
  KEYS[1] `events`, the audit stream
  ARGV[1] prefix P   ARGV[2] task id   ARGV[3] token   ARGV[4] result (JSON text or "")
  ARGV[5] the agent the caller acts as ("" anyone: direct store access)
  ARGV[6] review reference (a branch, commit or PR; "" none: done at once)
  ARGV[7] "1": then claim for the agent of ARGV[5] (not "") as claim-1.lua would, with
  ARGV[8] lease ttl ms   ARGV[9] queues "a,b" or ""   ARGV[10] count; "" (or none): no claim
  Touches P .. affine:<agent>, agent:<name>, agents, assigned:<agent>, auctions, backoff,
    bids:<id>, capsigs:<queue>, cascaded:<id>, cascades:cancel, cascades:restore,
    children:<id>:<token>, deadlines, dependents:<id>, due:at, epoch, finished:<kind>:<queue>,
    heads:<sig>, held:<agent>, live, lock:<path>, lockpaths, locks, paused, queues,
    ready:<queue>:<sig>, retention:due, retention:held, ring, seq:token, sigs,
    state:<state>, steal, task:<id>, taskevents:<id>, tasklocks:<id>, won:<agent>
  Publishes on P .. claimable, hints, wake:<agent>
  A plan's parent (lib's plan_complete) with unfinished subtasks waits blocked for them
  instead, or ends dead when one of them already ended dead or cancelled.
  Returns {0, unblocked ids...}; with a claim, {0, k, the k unblocked ids, then what
  claim-1.lua returns, in the same table (one flat reply: lib.lua claim_tasks)}; {-1, id}
  no such task; {-2, id} lease lost; {-9, 'claim', id, holder, agent} the claim is another
  agent's (then nothing is claimed either).
]]
--@include lib
local P = ARGV[1]
local now = now_ms()
if ARGV[7] == '1' then claims_next = ARGV[5] end  -- its claim below reads its `full` flag
local out, agent = complete_task(P, ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6] or '', now)
if out[1] ~= 0 then
  if claims_next then free_room(P, claims_next) end  -- a lease that expired just now (check_lease)
  return out
end
if ARGV[7] == '1' then
  -- The agent's next task in the same call: one round trip per task for a busy agent. Its
  -- record is written once, by the claim (consecutive failures reset with its last sighting).
  sweep_due(P, now)
  -- out may be lib's DONE (nothing unblocked, most often): not written, nor copied.
  local reply = out == DONE and {0, 0} or {0, #out - 1, unpack(out, 2)}
  return claim_tasks(P, ARGV[5], ARGV[8], ARGV[9], ARGV[10], now, true, reply)
end
agent_completed(P, agent, now)
return out

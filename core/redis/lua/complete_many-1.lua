--[[
  complete_many: one agent finishes several of its claimed tasks at once, each exactly as
  complete-1.lua would without a review (lib.lua complete_task), then, when asked, claims its
  next tasks as claim-1.lua would; all in one call, so an agent working through a batch
  pays one round trip per batch. Each task stands alone: one refused (its lease lost, no
  such task, another agent's claim) changes nothing for it and does not stop the others.
  Bounded work (rule 10): at most ${claim_batch_max} tasks per call.
  KEYS[1] `events`, the audit stream
  ARGV[1] prefix P   ARGV[2] the agent (not "": every claim must be its own)
  ARGV[3] how many to claim next ("0": no claim)   ARGV[4] lease ttl ms   ARGV[5] queues "a,b" or ""
  ARGV[6..] the tasks, three values each: task id, token, result (JSON text or "")
  Touches P .. affine:<agent>, agent:<name>, agents, assigned:<agent>, auctions, backoff,
    bids:<id>, capsigs:<queue>, cascaded:<id>, cascades:cancel, cascades:restore,
    children:<id>:<token>, deadlines, dependents:<id>, due:at, epoch, finished:<kind>:<queue>,
    heads:<sig>, held:<agent>, live, lock:<path>, lockpaths, locks, paused, queues,
    ready:<queue>:<sig>, retention:due, retention:held, ring, seq:token, sigs,
    state:<state>, steal, task:<id>, taskevents:<id>, tasklocks:<id>, won:<agent>
  Publishes on P .. claimable, hints, wake:<agent>
  Returns one flat table: 0, n (the tasks given), then each task's reply in order as its
  length and its elements ({0, unblocked ids...}, or a refusal {-1, id}, {-2, id} or
  {-9, 'claim', id, holder, agent}), then what claim-1.lua returns (or 0: no claim
  asked); {-5, message} more than ${claim_batch_max} tasks, or not in threes.
]]
--@include lib
local P, agent, count = ARGV[1], ARGV[2], tonumber(ARGV[3])
local n = (#ARGV - 5) / 3
if n ~= math.floor(n) then return {-5, 'tasks come in threes: id, token, result'} end
if n > ${claim_batch_max} then return {-5, 'at most ${claim_batch_max} tasks in one complete_many'} end
local now = now_ms()
if count > 0 then claims_next = agent end  -- its claim below reads its `full` flag
-- One flat reply (lib.lua claim_tasks says why): each task's outcome as its length, then it.
local reply, done = {0, n}, false
for i = 6, #ARGV, 3 do
  local out = complete_task(P, ARGV[i], ARGV[i + 1], ARGV[i + 2], agent, '', now)
  local at = #reply
  reply[at + 1] = #out
  for j = 1, #out do reply[at + 1 + j] = out[j] end
  if out[1] == 0 then done = true end
end
if count > 0 then
  sweep_due(P, now)
  -- The agent's record is written once, by the claim (failures reset when one completed).
  return claim_tasks(P, agent, ARGV[4], ARGV[5], count, now, done, reply)
end
if done then agent_completed(P, agent, now) end
reply[#reply + 1] = 0
return reply

--[[
  review: a reviewer decides on a task delivered for review (complete-1.lua with a
  reference): accept (review -> done, exactly as a completion: finish_done in lib.lua) or
  return (review -> queued, the note in its checkpoint, no attempt counted). The reviewer is
  an agent holding the review capability that did not deliver it, or an operator.
  KEYS[1] `events`, the audit stream
  ARGV[1] prefix P   ARGV[2] task id   ARGV[3] verdict: accept | return
  ARGV[4] the note a return leaves (in the task's checkpoint, after ARGV[9]) or ""
  ARGV[5] the reviewing agent ("" when an operator reviews)   ARGV[6] the operator or ""
  ARGV[7] the delivery's token the reviewer saw ("0": any)   ARGV[8] the review capability
  ARGV[9] what the checkpoint of a returned task starts with, before the note
  Touches P .. affine:<agent>, agent:<name>, assigned:<agent>, auctions, backoff, bids:<id>,
    capsigs:<queue>, cascaded:<id>, cascades:cancel, cascades:restore, deadlines,
    dependents:<id>, due:at, finished:<kind>:<queue>, heads:<sig>, held:<agent>, live, paused,
    queues, ready:<queue>:<sig>, retention:due, retention:held, ring, sigs,
    state:<state>, steal, task:<id>, taskevents:<id>
  Publishes on P .. claimable, hints, wake:<agent>
  Returns {0, new state, unblocked ids...}; {-1, id} no such task or reviewing agent;
          {-4, id} a later delivery than the one seen; {-5, message} an unknown verdict;
          {-7, message} not in review, the reviewer lacks the capability, or delivered it.
]]
--@include lib
local P, id, verdict, note, reviewer, operator = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local now = now_ms()
if verdict ~= 'accept' and verdict ~= 'return' then return {-5, 'unknown verdict ' .. verdict} end
local t = load_task(P, id)
if not t then return {-1, id} end
if reviewer ~= '' then
  local caps = rcall('HGET', P .. 'agent:' .. reviewer, 'caps')
  if not caps then return {-1, reviewer} end
  local can = false
  for _, c in ipairs(split(caps)) do if c == ARGV[8] then can = true end end
  if not can then
    return {-7, reviewer .. ' may not review: it lacks the ' .. ARGV[8] .. ' capability'}
  end
end
if t.state ~= 'review' then return {-7, verdict .. ' does not apply to a ' .. t.state .. ' task'} end
if ARGV[7] ~= '0' and tostring(tonumber(t.token) or 0) ~= ARGV[7] then return {-4, id} end
if reviewer ~= '' and reviewer == t.agent then
  return {-7, reviewer .. ' delivered ' .. id .. ': an agent may not review its own delivery'}
end
leave(P, id, t)
local out = {0}
local data = {ref = t.review_ref or '', delivered_by = t.agent or ''}
if verdict == 'accept' then
  out[2] = 'done'
  for _, d in ipairs(finish_done(P, id, t, now, {'reason', ''})) do out[#out + 1] = d end
  audit(P, now, 'accepted', id, reviewer, t.token, data, operator)
else
  out[2] = 'queued'
  enter(P, id, t, 'queued', now, {'checkpoint', ARGV[9] .. note, 'progress', 0})
  data.note = note
  audit(P, now, 'returned', id, reviewer, t.token, data, operator)
end
if reviewer ~= '' then touch_agent(P, reviewer, now) end
return out

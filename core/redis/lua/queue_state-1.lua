--[[
  queue_state: an operator pauses or resumes a queue (claims skip paused queues). A paused
  queue leaves the head index of each of its signatures and comes back on resume: work
  bounded by the signatures in use (at most ${max_capsigs}).
  KEYS[1] `events`, the audit stream
  ARGV[1] prefix P   ARGV[2] queue   ARGV[3] "pause" | "resume"   ARGV[4] operator
  Touches P .. capsigs:<queue>, heads:<sig>, paused, queues, ready:<queue>:<sig>, taskevents:<id>
  Publishes on P .. claimable, hints
  Returns {0, 1 when this changed anything else 0}.
]]
--@include lib
local P, queue, how, operator = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local now = now_ms()
local changed
if how == 'pause' then changed = rcall('SADD', P .. 'paused', queue) else changed = rcall('SREM', P .. 'paused', queue) end
if changed == 1 then
  for _, sig in ipairs(rcall('SMEMBERS', P .. 'capsigs:' .. queue)) do
    if how == 'pause' then
      rcall('ZREM', P .. 'heads:' .. sig, queue)
    else
      local head = rcall('ZRANGE', P .. 'ready:' .. queue .. ':' .. sig, '0', '0', 'WITHSCORES')
      if #head > 0 then
        rcall('ZADD', P .. 'heads:' .. sig, head[2], queue)
      else
        ready_gone(P, queue, sig)  -- left empty by a claim of one task (lib.lua claim_tasks)
      end
    end
  end
  if how == 'resume' then announce(P .. 'claimable', queue .. ' *') end
  audit(P, now, how == 'pause' and 'paused' or 'resumed', '', '', '', {queue = queue}, operator)
end
return {0, changed}

--[[
  fail: end a claim with a failure. Recoverable: retry after exponential backoff with
  jitter until max_attempts failures, then dead. Fatal: dead at once. Either way the
  claim is rolled back (its locks released, its unclaimed subtasks cancelled); a dead
  task's dependents are cancelled too (lib.lua cascade_cancel).
  KEYS[1] `events`, the audit stream
  ARGV[1] prefix P   ARGV[2] task id   ARGV[3] token   ARGV[4] reason   ARGV[5] "1" fatal
  ARGV[6] jitter in [0, 1] (the client's randomness; the clock stays the store's)
  ARGV[7] the agent the caller acts as ("" anyone: direct store access)
  Touches P .. affine:<agent>, agent:<name>, assigned:<agent>, auctions, backoff, bids:<id>,
    capsigs:<queue>, cascaded:<id>, cascades:cancel, cascades:restore,
    children:<id>:<token>, deadlines, dependents:<id>, due:at, finished:<kind>:<queue>,
    heads:<sig>, held:<agent>, lock:<path>, lockpaths, locks, paused, queues,
    ready:<queue>:<sig>, retention:due, retention:held, ring, sigs,
    state:<state>, steal, task:<id>, taskevents:<id>, tasklocks:<id>
  Publishes on P .. claimable, hints, wake:<agent>
  Returns {0, state, ready_ms}; {-1, id} no such task; {-2, id} lease lost;
  {-9, 'claim', id, holder, agent} the claim is another agent's.
]]
--@include lib
local P, id, token, reason = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local fatal = ARGV[5] == '1'
local now = now_ms()
local t, err = check_lease(P, id, token, now, ARGV[7])
if not t then return err end
local failures = tonumber(t.failures or 0) + 1
leave(P, id, t)
local rb = rollback(P, id, t, now)
agent_failed(P, t.agent, now)
local state, ready = 'dead', 0
if not fatal and failures < tonumber(t.max_attempts) then
  state = 'retrying'
  local delay = math.min(${backoff_base_ms} * 2 ^ (failures - 1), ${backoff_max_ms})
  -- "Equal jitter": half the delay fixed, half random, so retries spread out but never
  -- come back sooner than half the nominal backoff.
  ready = now + math.floor(delay / 2 + delay / 2 * tonumber(ARGV[6]))
  t.ready_ms = ready
end
-- In enter's HSET; a dead task's ready_ms 0 is its default, not stored (enter: '').
enter(P, id, t, state, now, {'failures', failures, 'reason', reason, 'ready_ms', ready > 0 and ready or ''})
audit(P, now, 'failed', id, t.agent, token, {
  reason = reason, fatal = fatal, next = state, ready_ms = ready, failures = failures,
  locks = rb.locks, cancelled = rb.cancelled})
if state == 'dead' then cascade_cancel(P, id, now) end
return {0, state, ready}

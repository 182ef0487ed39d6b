--[[
  claim: lease up to `count` claimable tasks to an agent. Expired leases and ended
  backoffs are handled first, and bidding windows whose time is up are closed, so recovery
  never waits for a separate reaper (lib.lua sweep_due: only when `due:at` says something
  fell due, one command otherwise).
  Order: claims the agent won in an auction and was not handed yet, then tasks reassigned
  to this agent by an operator, then highest priority, then oldest, over the chosen queues
  (all when none given) and the tasks waiting for this agent as their affinity owner
  (lib.lua route; others' such tasks only once their steal time passed), skipping paused queues and tasks
  needing a capability the agent lacks. An unknown agent is registered with no
  capabilities and the default capacity.
  Bounded work (rule 10): it looks at the signatures in use (at most ${max_capsigs}) that
  the agent can take, one head index each, never at the queues one by one; at most
  ${claim_batch_max} tasks per call (the caller loops for more).
  KEYS[1] `events`, the audit stream
  ARGV[1] prefix P   ARGV[2] agent   ARGV[3] lease ttl ms   ARGV[4] queues "a,b" or ""
  ARGV[5] count
  Touches P .. affine:<agent>, agent:<name>, agents, assigned:<agent>, auctions, backoff,
    bids:<id>, capsigs:<queue>, cascaded:<id>, cascades:cancel, cascades:restore,
    children:<id>:<token>, deadlines, dependents:<id>, due:at, epoch, finished:<kind>:<queue>,
    heads:<sig>, held:<agent>, live, lock:<path>, lockpaths, locks, paused, queues,
    ready:<queue>:<sig>, retention:due, retention:held, ring, seq:token, sigs,
    state:<state>, steal, task:<id>, taskevents:<id>, tasklocks:<id>, won:<agent>
  Publishes on P .. claimable, hints, wake:<agent>
  Returns {0, id, n, fields...} three entries per claimed task: its id, how many fields
          (names and values), and those joined by \31 (lib.lua reply_task);
          {1, reason, next_change_in_ms, caps}: nothing claimable; reason is empty |
          at-capacity | breaker-open; next_change_in_ms is how long until a lease or
          backoff next ends, an affine task becomes anyone's, or the breaker closes (-1 if nothing is scheduled); caps the
          agent's capabilities "a,b" (what a waiting claimer can take).
]]
--@include lib
local P = ARGV[1]
local now = now_ms()
sweep_due(P, now)
return claim_tasks(P, ARGV[2], ARGV[3], ARGV[4], ARGV[5], now)

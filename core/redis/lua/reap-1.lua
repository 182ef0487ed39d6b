--[[
  reap: one recovery pass: expire overdue leases (rule 5), go on with cascades that did not
  fit in one call (lib.lua reap_due), end finished backoffs, close bidding windows whose
  time is up (lib.lua close_auctions: the winner gets the claim), drop expired lock holders; with
  a reaper named, record the pass as the board's reaper heartbeat (P .. 'reaper:status', a
  hash: who and when, and the same again with what it recovered for the last pass that
  recovered something). The heartbeat is no change of the board: no audit event, no hint.
  KEYS[1] `events`, the audit stream
  ARGV[1] prefix P
  ARGV[2] reaper kind ('' : record nothing)   ARGV[3] host   ARGV[4] pid   ARGV[5] interval ms
  Touches P .. affine:<agent>, agent:<name>, assigned:<agent>, auctions, backoff, bids:<id>,
    capsigs:<queue>, cascaded:<id>, cascades:cancel, cascades:restore,
    children:<id>:<token>, deadlines, dependents:<id>, due:at, epoch, finished:<kind>:<queue>,
    heads:<sig>, held:<agent>, live, lock:<path>, lockpaths, locks, paused, queues,
    ready:<queue>:<sig>, reaper:status, retention:due, retention:held, ring,
    seq:token, sigs, state:<state>, steal, task:<id>, taskevents:<id>, tasklocks:<id>,
    won:<agent>
  Publishes on P .. claimable, hints, wake:<agent>
  Returns {0, expired (flat id, outcome pairs), promoted ids, count of lock holds dropped,
          ids cancelled by cascades, ids restored, count of tasks whose cascade or restore
          still waits, ids whose bidding window closed}.
]]
--@include lib
local P = ARGV[1]
local now = now_ms()
local expired = {}
local swept = sweep_due(P, now, true)
for _, pair in ipairs(swept[1]) do
  expired[#expired + 1] = pair[1]
  expired[#expired + 1] = pair[2]
end
local promoted = swept[2]
-- Boards an earlier claimroom wrote kept their claimed tasks in state:claimed as well;
-- nothing reads or writes it now (lib.lua enter): the first pass drops it.
rcall('DEL', P .. 'state:claimed')
local dropped = 0
for _, path in ipairs(rcall('ZRANGEBYSCORE', P .. 'locks', '-inf', now, 'LIMIT', '0', '${reap_batch}')) do
  local gone, seen = {}, {}
  local latest = 0
  local holds = holds_on(P, path)
  if #holds == 0 then  -- a path whose hash is gone: nothing holds it
    rcall('ZREM', P .. 'locks', path)
    rcall('ZREM', P .. 'lockpaths', path)
  end
  for _, h in ipairs(holds) do
    if h.expires <= now then
      drop_hold(P, path, h.agent, h.task)
      dropped = dropped + 1
      if not seen[h.agent] then gone[#gone + 1] = h.agent; seen[h.agent] = true end
    elseif h.expires > latest then
      latest = h.expires
    end
  end
  if latest > 0 then rcall('ZADD', P .. 'locks', latest, path) end
  if #gone > 0 then audit(P, now, 'lock-expired', '', '', '', {path = path, holders = gone}) end
end
if ARGV[2] ~= '' then
  local sk = P .. 'reaper:status'
  rcall('HSET', sk, 'kind', ARGV[2], 'host', ARGV[3], 'pid', ARGV[4], 'interval_ms', ARGV[5], 'at_ms', now)
  rcall('HINCRBY', sk, 'passes', '1')
  if #expired > 0 or #promoted > 0 or dropped > 0 then
    local by = {queued = {}, orphaned = {}, dead = {}}
    for i = 1, #expired, 2 do
      local list = by[expired[i + 1]]
      if list then list[#list + 1] = expired[i] end
    end
    rcall('HSET', sk, 'reaped_kind', ARGV[2], 'reaped_host', ARGV[3], 'reaped_pid', ARGV[4],
      'reaped_interval_ms', ARGV[5], 'reaped_ms', now,
      'requeued', table.concat(by.queued, ','), 'orphaned', table.concat(by.orphaned, ','),
      'dead', table.concat(by.dead, ','), 'promoted', table.concat(promoted, ','), 'locks_expired', dropped)
  end
end
local pending = rcall('ZCARD', P .. 'cascades:cancel') + rcall('ZCARD', P .. 'cascades:restore')
return {0, expired, promoted, dropped, cascade_log.cancelled, cascade_log.restored, pending, auction_log}

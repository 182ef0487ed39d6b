--[[
  reap: one recovery pass: expire overdue leases (rule 5), end finished backoffs, drop
  expired lock holders; with a reaper named, record the pass as the board's reaper
  heartbeat (P .. 'reaper:status', a hash: who and when, and the same again with what it
  recovered for the last pass that recovered something). The heartbeat is no change of the
  board: no audit event, no hint.
  KEYS[1] audit stream
  ARGV[1] prefix P
  ARGV[2] reaper kind ('' : record nothing)   ARGV[3] host   ARGV[4] pid   ARGV[5] interval ms
  Returns {0, {id, outcome}..., {promoted ids}, locks dropped} as
          {0, expired (flat id, outcome pairs), promoted ids, count of lock holds dropped}.
]]
--@include lib
local P = ARGV[1]
local now = now_ms()
local expired = {}
for _, pair in ipairs(reap_due(P, now)) do
  expired[#expired + 1] = pair[1]
  expired[#expired + 1] = pair[2]
end
local promoted = promote_due(P, now)
local dropped = 0
for _, path in ipairs(rcall('ZRANGEBYSCORE', P .. 'locks', '-inf', now, 'LIMIT', 0, ${reap_batch})) do
  local lk = P .. 'lock:' .. path
  local gone = {}
  local latest = 0
  local raw = rcall('HGETALL', lk)
  for i = 1, #raw, 2 do
    local agent = string.match(raw[i], '^h:(.*)$')
    if agent then
      local exp = tonumber(raw[i + 1])
      if exp <= now then gone[#gone + 1] = agent elseif exp > latest then latest = exp end
    end
  end
  for _, agent in ipairs(gone) do drop_hold(P, path, agent) end
  if latest > 0 then rcall('ZADD', P .. 'locks', latest, path) end
  if #gone > 0 then
    audit(P, now, 'lock-expired', '', '', '', {path = path, holders = gone})
    dropped = dropped + #gone
  end
end
if ARGV[2] ~= '' then
  local sk = P .. 'reaper:status'
  rcall('HSET', sk, 'kind', ARGV[2], 'host', ARGV[3], 'pid', ARGV[4], 'interval_ms', ARGV[5], 'at_ms', now)
  rcall('HINCRBY', sk, 'passes', 1)
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
return {0, expired, promoted, dropped}

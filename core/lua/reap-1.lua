--[[
  reap: one recovery pass: expire overdue leases (rule 5), go on with cascades that did not
  fit in one call (lib.lua reap_due), end finished backoffs, drop expired lock holders.
  KEYS[1] audit stream
  ARGV[1] prefix P
  Returns {0, expired (flat id, outcome pairs), promoted ids, count of lock holds dropped,
          ids cancelled by cascades, ids restored, count of tasks whose cascade or restore
          still waits}.
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
local pending = rcall('ZCARD', P .. 'cascades:cancel') + rcall('ZCARD', P .. 'cascades:restore')
return {0, expired, promoted, dropped, cascade_log.cancelled, cascade_log.restored, pending}

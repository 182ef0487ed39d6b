--[[
  lock: take path locks for an agent, all or none. A lock on a path covers everything
  under it, so "src" conflicts with "src/app.py" and the other way round. Shared locks
  coexist with shared locks; an exclusive lock coexists with nothing but the same agent.
  Holders whose lease ran out are ignored (and dropped by the reaper).
  KEYS[1] audit stream
  ARGV[1] prefix P   ARGV[2] agent   ARGV[3] ttl ms   ARGV[4] "1" shared
  ARGV[5] task id the locks belong to ("" none): they end with that claim
  ARGV[6..] normalised paths
  Returns {0, expires_ms}; {-6, path, holder} conflict; {-1, task} no such task;
  {-3, task} the agent does not hold that task.
]]
--@include lib
local P, agent, ttl, shared, task = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4] == '1', ARGV[5]
local now = now_ms()
if task ~= '' then
  local t = rcall('HMGET', P .. 'task:' .. task, 'state', 'agent')
  if not t[1] then return {-1, task} end
  if t[1] ~= 'claimed' or t[2] ~= agent then return {-3, task} end
end

-- The first live holder other than `agent` that a lock on `path` would clash with.
local function clash(path)
  local raw = rcall('HGETALL', P .. 'lock:' .. path)
  if #raw == 0 then return nil end
  local h = to_table(raw)
  if shared and h.mode == 'shared' then return nil end
  for field, exp in pairs(h) do
    local who = string.match(field, '^h:(.*)$')
    if who and who ~= agent and tonumber(exp) > now then return who end
  end
  return nil
end

local paths = {}
for i = 6, #ARGV do paths[#paths + 1] = ARGV[i] end
for _, path in ipairs(paths) do
  local candidates = {path}
  for i = 2, #path do
    if string.sub(path, i, i) == '/' then candidates[#candidates + 1] = string.sub(path, 1, i - 1) end
  end
  for _, under in ipairs(rcall('ZRANGEBYLEX', P .. 'lockpaths', '[' .. path .. '/', '(' .. path .. '0')) do
    candidates[#candidates + 1] = under
  end
  for _, c in ipairs(candidates) do
    local who = clash(c)
    if who then return {-6, c, who} end
  end
end

local expires = now + ttl
for _, path in ipairs(paths) do
  local lk = P .. 'lock:' .. path
  local mode = 'exclusive'
  if shared then mode = 'shared' end
  rcall('HSET', lk, 'mode', mode, 'h:' .. agent, expires, 't:' .. agent, task)
  rcall('ZADD', P .. 'locks', 'GT', expires, path)  -- GT still adds a new path
  rcall('ZADD', P .. 'lockpaths', 0, path)
  if task ~= '' then rcall('SADD', P .. 'tasklocks:' .. task, agent .. '|' .. path) end
end
audit(P, now, 'locked', task, agent, '', {paths = paths, shared = shared, expires_ms = expires})
return {0, expires}

--[[
  lock: give an agent a hold on each path, all or none. A hold belongs to one (agent, task)
  pair (task "" when untied) and has its own mode and expiry; taking it again replaces
  it. A lock on a path covers everything under it, so "src" conflicts with "src/app.py"
  and the other way round: every live hold of another agent on the path, an ancestor or
  a descendant refuses the lock, unless both are shared. An agent's own holds never
  refuse it. Holds whose expiry passed are ignored (and dropped by the reaper).
  A task-bound hold lives as long as the agent's claim of the task: its expiry is the
  claim's deadline (heartbeat and extend move it along), and the claim's end drops it.
  KEYS[1] `events`, the audit stream
  ARGV[1] prefix P   ARGV[2] agent   ARGV[3] ttl ms (untied holds)   ARGV[4] "1" shared
  ARGV[5] task id the holds belong to ("" untied)   ARGV[6..] normalised paths
  Touches P .. lock:<path>, lockpaths, locks, task:<id>, taskevents:<id>, tasklocks:<id>
  Publishes on P .. hints
  Returns {0, expires_ms}; {-6, path, holder} conflict; {-1, task} no such task;
  {-3, task} the agent does not hold a live claim of that task.
]]
--@include lib
local P, agent, ttl, shared, task = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4] == '1', ARGV[5]
local now = now_ms()
local expires = now + ttl
if task ~= '' then
  local t = rcall('HMGET', P .. 'task:' .. task, 'state', 'agent', 'deadline_ms')
  if not t[1] then return {-1, task} end
  if t[1] ~= 'claimed' or t[2] ~= agent or tonumber(t[3]) <= now then return {-3, task} end
  expires = tonumber(t[3])
end

-- The first live holder other than `agent` that a hold on `path` would clash with.
local function clash(path)
  for _, h in ipairs(holds_on(P, path)) do
    if h.agent ~= agent and h.expires > now and not (shared and h.shared) then return h.agent end
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

local key = hold_key(agent, task)
local mode = 'exclusive'
if shared then mode = 'shared' end
for _, path in ipairs(paths) do
  rcall('HSET', P .. 'lock:' .. path, 'h:' .. key, expires, 'm:' .. key, mode)
  rcall('ZADD', P .. 'locks', 'GT', expires, path)  -- GT still adds a new path
  rcall('ZADD', P .. 'lockpaths', '0', path)
  if task ~= '' then rcall('SADD', P .. 'tasklocks:' .. task, agent .. '|' .. path) end
end
if task ~= '' then end_plain(P, task) end
audit(P, now, 'locked', task, agent, '', {paths = paths, shared = shared, expires_ms = expires})
return {0, expires}

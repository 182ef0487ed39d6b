--[[
  inbox: read an agent's direct and broadcast messages, oldest first, and mark what it
  returns as read (ARGV[5]). Without ARGV[3] the newest ARGV[4]; with it the oldest ARGV[4]
  unread. Looks at most ${inbox_max} + ${broadcasts_max} messages (both logs are capped), and only 2 x ARGV[4]
  when the read marks are the oldest messages (as reading oldest first leaves them).
  First drops the agent's read marks of broadcasts the log no longer holds.
  KEYS[1] `events`, the audit stream
  ARGV[1] prefix P   ARGV[2] agent   ARGV[3] "1": unread only   ARGV[4] limit
  ARGV[5] "1": mark what is returned as read
  Touches P .. agent:<name>, broadcastread:<agent>, broadcasts, inbox:<agent>, inboxread:<agent>
  Publishes on P .. hints
  Returns {0, message JSON, "1" when read before else "0", ...}; {NO_AGENT, agent} when the
  agent is not registered.
]]
local rcall = redis.call
local P, agent, unread, limit, mark = ARGV[1], ARGV[2], ARGV[3] == '1', tonumber(ARGV[4]), ARGV[5] == '1'
if rcall('EXISTS', P .. 'agent:' .. agent) == 0 then return {-10, agent} end
local ik, rk, bk, brk = P .. 'inbox:' .. agent, P .. 'inboxread:' .. agent, P .. 'broadcasts', P .. 'broadcastread:' .. agent
local first = rcall('ZRANGE', bk, '0', '0', 'WITHSCORES')
if #first > 0 then rcall('ZREMRANGEBYSCORE', brk, '-inf', '(' .. first[2]) else rcall('DEL', brk) end

-- The unread messages of a log: its marks are a subset of its ids (stale broadcast marks
-- were dropped above); when they are its oldest ones, as reading oldest first leaves them,
-- the unread start right after and `limit` of them are enough. Else every id is looked at.
local function unread_window(key, marks)
  local r = rcall('ZCARD', marks)
  if r > 0 then
    local at, top = rcall('ZRANGE', key, r - 1, r - 1, 'WITHSCORES'), rcall('ZRANGE', marks, '-1', '-1', 'WITHSCORES')
    if #at == 0 or at[2] ~= top[2] then return rcall('ZRANGE', key, '0', '-1', 'WITHSCORES') end
  end
  return rcall('ZRANGE', key, r, r + limit - 1, 'WITHSCORES')
end

local direct, bcast
if unread then
  direct, bcast = unread_window(ik, rk), unread_window(bk, brk)
else
  -- The newest `limit` of the two together are among the newest `limit` of each.
  direct = rcall('ZREVRANGE', ik, '0', limit - 1, 'WITHSCORES')
  bcast = rcall('ZREVRANGE', bk, '0', limit - 1, 'WITHSCORES')
end
local all = {}
for i = 1, #direct, 2 do all[#all + 1] = {direct[i], tonumber(direct[i + 1]), rk} end
for i = 1, #bcast, 2 do all[#all + 1] = {bcast[i], tonumber(bcast[i + 1]), brk} end
table.sort(all, function(a, b) return a[2] < b[2] end)

local picked = {}
if unread then
  for _, m in ipairs(all) do
    if #picked >= limit then break end
    if not rcall('ZSCORE', m[3], m[2]) then picked[#picked + 1] = {m, false} end
  end
else
  for i = math.max(1, #all - limit + 1), #all do
    local m = all[i]
    picked[#picked + 1] = {m, rcall('ZSCORE', m[3], m[2]) ~= false}
  end
end
local out, marked = {0}, 0
for _, p in ipairs(picked) do
  out[#out + 1] = p[1][1]
  out[#out + 1] = p[2] and '1' or '0'
  if mark and not p[2] then
    rcall('ZADD', p[1][3], p[1][2], p[1][2])
    marked = marked + 1
  end
end
if marked > 0 then rcall('PUBLISH', P .. 'hints', 'read ') end
return out

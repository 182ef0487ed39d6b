--[[
  won: what a task's bidding window came to for one bidder (bid --wait). A won claim the
  winner still holds is handed over here (with its fields): it leaves won:<agent>, so the
  agent's next claim does not hand it over again.
  KEYS[1] `events`, the audit stream
  ARGV[1] prefix P   ARGV[2] task id   ARGV[3] agent
  Touches P .. auctions, task:<id>, won:<agent>
  Returns {0, status, winner, close_ms, task fields (flat; empty unless the won claim is
  handed over)}, status one of waiting (the window is not open yet), open, won, lost,
  queued (closed without an eligible bid); {-1, id} no such task; {-11, message} the task
  opens no bidding window.
]]
--@include lib
local P, id, agent = ARGV[1], ARGV[2], ARGV[3]
local now = now_ms()
local raw = rcall('HGETALL', P .. 'task:' .. id)
if #raw == 0 then return {-1, id} end
local t = to_table(raw)
if tonumber(t.bid_window_ms or 0) <= 0 then return {-11, id .. ' opens no bidding window'} end
local close = t.bid_close_ms or ''
local winner = t.bid_winner or ''
if close == '' then return {0, 'waiting', '', 0, {}} end
if rcall('ZSCORE', P .. 'auctions', id) and t.state == 'blocked' then return {0, 'open', '', close, {}} end
if winner == agent then
  rcall('ZREM', P .. 'won:' .. agent, id)
  -- Its claim as it is now, if it still holds it (handed over by a claim before, or not).
  if t.state == 'claimed' and t.agent == agent and tonumber(t.deadline_ms) > now then
    return {0, 'won', winner, close, raw}
  end
  return {0, 'won', winner, close, {}}
end
if winner ~= '' then return {0, 'lost', winner, close, {}} end
return {0, 'queued', '', close, {}}

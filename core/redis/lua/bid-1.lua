--[[
  bid: an agent's bid in a task's open bidding window (core/bidding.py). A second bid by
  the same agent replaces its cost, its lease ttl and its time (a changed offer is a new
  offer: it ranks as of now among equal costs). Refused, with nothing changed, when the
  window is not open (never opened, not yet opened, closed, or its time is up and it waits
  for the next claim or reaper pass to close it), when the agent is not registered, lacks a
  capability the task needs, or its breaker is open, and when the window holds
  ${max_bids_per_task} bids of other agents already.
  KEYS[1] `events`, the audit stream
  ARGV[1] prefix P   ARGV[2] task id   ARGV[3] agent   ARGV[4] cost (a number, >= 0)
  ARGV[5] lease ttl ms the claim gets if the bid wins
  Touches P .. agent:<name>, auctions, bids:<id>, due:at, held:<agent>, live, ring, task:<id>,
    taskevents:<id>
  Publishes on P .. hints
  Returns {0, close_ms, at_ms, replaced (1 or 0)}; {-1, id} no such task;
  {-11, message} refused.
]]
--@include lib
local P, id, agent = ARGV[1], ARGV[2], ARGV[3]
local now = now_ms()
local t = load_task(P, id)
if not t then return {-1, id} end
local close = rcall('ZSCORE', P .. 'auctions', id)
if t.state ~= 'blocked' or not close or tonumber(t.waiting or 0) > 0 then
  if tonumber(t.bid_window_ms or 0) <= 0 then return {-11, id .. ' opens no bidding window'} end
  if (t.bid_close_ms or '') == '' then
    return {-11, 'the bidding window of ' .. id .. ' is not open yet: it waits on its dependencies'}
  end
  return {-11, 'the bidding window of ' .. id .. ' has closed (' .. t.state .. ')'}
end
if tonumber(close) <= now then return {-11, 'the bidding window of ' .. id .. ' has closed'} end
local why = cannot_take(P, agent, t, now, false)
if why then return {-11, agent .. ' may not bid on ' .. id .. ': ' .. why} end
local bk = P .. 'bids:' .. id
local replaced = rcall('HEXISTS', bk, agent)
if replaced == 0 and rcall('HLEN', bk) >= ${max_bids_per_task} then
  return {-11, id .. ' has ${max_bids_per_task} bids already'}
end
rcall('HSET', bk, agent, ARGV[4] .. '|' .. now .. '|' .. ARGV[5])
touch_agent(P, agent, now)
audit(P, now, 'bid', id, agent, '', {cost = tonumber(ARGV[4]), ttl_ms = tonumber(ARGV[5]), replaced = replaced == 1})
return {0, close, now, replaced}

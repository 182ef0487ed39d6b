--[[
  retention: change the retention settings of one queue or of the whole board (audited).
  Settings are a JSON object per scope in the hash `retention` (see retain-1.lua). A
  queue's changed settings apply from the next reaper pass; after the board's, the caller
  marks every queue due in capped batches (RedisStore._set_retention).
  KEYS[1] `events`, the audit stream
  ARGV[1] prefix P   ARGV[2] scope: "*" the board, else a queue
  ARGV[3] JSON object of the fields to set (durations in ms, -1 for no limit)
  ARGV[4] "1": drop the scope's own settings first (a queue then follows the board's)
  Touches P .. retention, retention:due, taskevents:<id>
  Publishes on P .. hints
  Returns {0, the scope's own settings after the change (JSON)}.
]]
--@include lib
local P, scope = ARGV[1], ARGV[2]
local now = now_ms()
local key = P .. 'retention'
local own = {}
local raw = rcall('HGET', key, scope)
if raw and ARGV[4] ~= '1' then own = cjson.decode(raw) end
local count = 0
for k, v in pairs(cjson.decode(ARGV[3])) do own[k] = v end
for _ in pairs(own) do count = count + 1 end
local text = '{}'
if count == 0 then
  rcall('HDEL', key, scope)
else
  text = cjson.encode(own)
  rcall('HSET', key, scope, text)
end
if scope ~= '*' then
  -- (a queue without finished tasks leaves the due set again at the next look)
  rcall('ZADD', P .. 'retention:due', 'LT', '0', 'done:' .. scope)
  rcall('ZADD', P .. 'retention:due', 'LT', '0', 'failed:' .. scope)
end
audit(P, now, 'retention', '', '', '', {scope = scope, settings = own})
return {0, text}

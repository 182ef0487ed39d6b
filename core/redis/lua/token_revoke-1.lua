--[[
  token_revoke: forget every bearer token of one agent. Reads the whole token hash,
  which is capped at ${max_tokens} entries (rule 10).
  KEYS[1] `events`, the audit stream
  ARGV[1] prefix P   ARGV[2] agent
  Touches P .. taskevents:<id>, tokens
  Publishes on P .. hints
  Returns {0, how many were revoked}.
]]
--@include lib
local P, agent = ARGV[1], ARGV[2]
local now = now_ms()
local key = P .. 'tokens'
local raw = rcall('HGETALL', key)
local n = 0
for i = 1, #raw, 2 do
  if cjson.decode(raw[i + 1]).agent == agent then
    rcall('HDEL', key, raw[i])
    n = n + 1
  end
end
if n > 0 then audit(P, now, 'token-revoked', '', agent, '', {tokens = n}) end
return {0, n}

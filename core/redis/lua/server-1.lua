--[[
  server: refresh an MCP server's record on the board (claimroom serve), or retire it.
  KEYS[1] `servers`, the sorted set of server ids by when each record expires (ms); the
          records are in the hash KEYS[1] .. ':records' (id -> JSON)
  ARGV[1] server id   ARGV[2] the record's JSON ('': retire the server)   ARGV[3] ttl ms
  Records that expired are dropped first (at most ${max_servers} per call). The store
  stamps the record with started_ms (kept from its first refresh) and seen_ms (now).
  Returns {now_ms, started_ms} (started_ms 0 when retiring).
]]
local rcall = redis.call
local t = rcall('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local records = KEYS[1] .. ':records'
local gone = rcall('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', '0', '${max_servers}')
for _, id in ipairs(gone) do
  rcall('ZREM', KEYS[1], id)
  rcall('HDEL', records, id)
end
if ARGV[2] == '' then
  rcall('ZREM', KEYS[1], ARGV[1])
  rcall('HDEL', records, ARGV[1])
  return {now, 0}
end
local started = now
local old = rcall('HGET', records, ARGV[1])
if old then
  local ok, was = pcall(cjson.decode, old)
  if ok and type(was) == 'table' and tonumber(was.started_ms) then started = tonumber(was.started_ms) end
end
local rec = cjson.decode(ARGV[2])
rec.started_ms = started
rec.seen_ms = now
rcall('HSET', records, ARGV[1], cjson.encode(rec))
rcall('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
return {now, started}

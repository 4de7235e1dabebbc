-- Prepended to fill.lua and revoke.lua (one script each): what keeps a user's hash bounded.
-- A field `s:<sid>` holds its state and, after a colon, until when (unix seconds) a token
-- of that session could still be presented. Past that it decides nothing (every token of
-- the session has expired), and a missing field is only a cache miss: it can go.

-- Deletes the expired `s:` fields among a bounded number of the hash's fields: HSCAN on,
-- from where the last call stopped (cursor in field `c`). A small hash (listpack) is read
-- whole in one step, a large one about COUNT fields a call, so each fill or revocation
-- trims more than it adds. Fields without an expiry (written before it existed) are kept.
local function trim (key, now)
  local page = redis.call('HSCAN', key, redis.call('HGET', key, 'c') or '0', 'COUNT', 32)
  local kv = page[2]
  for i = 1, #kv, 2 do
    if string.sub(kv[i], 1, 2) == 's:' then
      local untilS = tonumber(string.match(kv[i + 1], ':(%d+)$'))
      if untilS ~= nil and untilS < now then redis.call('HDEL', key, kv[i]) end
    end
  end
  if page[1] == '0' then redis.call('HDEL', key, 'c') else redis.call('HSET', key, 'c', page[1]) end
end

local now = tonumber(redis.call('TIME')[1])

-- The key lives as long as the longest-lived of its fields needs, never shorter (a
-- key without an expiry gets one), and a write never extends it beyond that. (At least
-- a second from now: an instance clock behind Redis's must not delete the key outright.)
local function expireNotBefore (key, at)
  at = math.max(at, now + 1)
  if redis.call('EXPIRETIME', key) < at then redis.call('EXPIREAT', key, at) end
end

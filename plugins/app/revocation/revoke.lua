-- A revocation: KEYS[1] the user's hash; ARGV: ra (µs, or ''), the key's TTL (ms), then
-- the ids of the sessions that ended.
-- Raise `ra` (never lower it); when it rises, every session created before it is dead
-- through `ra` alone, so the per-session fields are dropped (that is the trimming).
-- Then mark the given sessions dead.
local key = KEYS[1]
local ra = ARGV[1]
if ra ~= '' then
  local cur = redis.call('HGET', key, 'ra')
  if not cur or tonumber(cur) < tonumber(ra) then
    for _, f in ipairs(redis.call('HKEYS', key)) do
      if string.sub(f, 1, 2) == 's:' then redis.call('HDEL', key, f) end
    end
    redis.call('HSET', key, 'ra', ra)
  end
end
for i = 3, #ARGV do redis.call('HSET', key, 's:' .. ARGV[i], 'x') end
redis.call('PEXPIRE', key, ARGV[2])
return 1

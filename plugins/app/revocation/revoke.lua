-- A revocation: KEYS[1] the user's hash; ARGV: ra (µs, or ''), until when (unix s) a token
-- issued before this revocation can still be presented, then the ids of the sessions
-- that ended.
-- Raise `ra` (never lower it); when it rises, every session created before it is dead
-- through `ra` alone, so the per-session fields are dropped. Then mark the given
-- sessions dead, each field kept until the last of its tokens has expired.
local key = KEYS[1]
local ra = ARGV[1]
trim(key, now)
if ra ~= '' then
  local cur = redis.call('HGET', key, 'ra')
  if not cur or tonumber(cur) < tonumber(ra) then
    for _, f in ipairs(redis.call('HKEYS', key)) do
      if string.sub(f, 1, 2) == 's:' then redis.call('HDEL', key, f) end
    end
    redis.call('HSET', key, 'ra', ra)
  end
end
for i = 3, #ARGV do redis.call('HSET', key, 's:' .. ARGV[i], 'x:' .. ARGV[2]) end
expireNotBefore(key, tonumber(ARGV[2]))
return 1

-- A read-through fill: KEYS[1] the user's hash; ARGV: ra (µs, or ''), the session id,
-- its state ('ok' or 'x'), until when (unix s) a token of the session can be presented,
-- the epoch pinned before the read.
-- Applied only if the epoch pinned before the PostgreSQL read is still there: if the key
-- was emptied since, a revocation may have committed after our read and had its Redis
-- write erased, and our "live" could resurrect it (returns 0, writes nothing). Otherwise
-- `ra` only rises, and "ok" is written with HSETNX so that a fill that raced a revocation
-- can never overwrite its "x".
local key = KEYS[1]
if redis.call('HGET', key, 'e') ~= ARGV[5] then return 0 end
trim(key, now)
if ARGV[1] ~= '' then
  local cur = redis.call('HGET', key, 'ra')
  if not cur or tonumber(cur) < tonumber(ARGV[1]) then redis.call('HSET', key, 'ra', ARGV[1]) end
end
local value = ARGV[3] .. ':' .. ARGV[4]
if ARGV[3] == 'x' then
  redis.call('HSET', key, 's:' .. ARGV[2], value)
else
  redis.call('HSETNX', key, 's:' .. ARGV[2], value)
end
expireNotBefore(key, tonumber(ARGV[4]))
return 1

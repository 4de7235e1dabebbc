-- The hash's epoch: KEYS[1] the user's hash; ARGV: a fresh candidate, and until when
-- (unix s) the key must live at least (the presented token's expiry).
-- A random value created once and kept until the key disappears (FLUSHALL, restart,
-- eviction, expiry). A read-through pins it before it reads PostgreSQL.
local e = redis.call('HGET', KEYS[1], 'e')
if e then return e end
redis.call('HSET', KEYS[1], 'e', ARGV[1])
local at = math.max(tonumber(ARGV[2]), tonumber(redis.call('TIME')[1]) + 1)
if redis.call('EXPIRETIME', KEYS[1]) < at then redis.call('EXPIREAT', KEYS[1], at) end
return ARGV[1]

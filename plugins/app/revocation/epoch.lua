-- The hash's epoch: KEYS[1] the user's hash; ARGV: a fresh candidate, the key's TTL (ms).
-- A random value created once and kept until the key disappears (FLUSHALL, restart,
-- eviction, expiry). A read-through pins it before it reads PostgreSQL.
local e = redis.call('HGET', KEYS[1], 'e')
if e then return e end
redis.call('HSET', KEYS[1], 'e', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return ARGV[1]

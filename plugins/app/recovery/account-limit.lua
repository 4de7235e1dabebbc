-- Counts one recovery mail asked for an account. KEYS[1]: the account's counter. ARGV: the
-- window (ms). The counter expires with its window (it never outlives it), so the first
-- request of a window sets the expiry. Returns the count so far and the ms left.
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return { n, redis.call('PTTL', KEYS[1]) }

-- An attempt counted by attempt.lua had the right password. KEYS[1]: the username's
-- lockout hash. ARGV: the client; the across-clients threshold; '1' when the sign-in is
-- not over (a second factor is still to come).
-- The client's run of failures ends, unless the sign-in is not over: then the run goes on
-- until the second factor is right, so that a client who knows the password cannot reset
-- its count of wrong codes by signing in again. Across clients only this attempt is taken
-- back: one client's success does not wipe what other clients failed.
local key, client = KEYS[1], ARGV[1]
if redis.call('EXISTS', key) == 0 then return 0 end
if ARGV[3] ~= '1' then redis.call('HDEL', key, 'c:' .. client, 'l:' .. client) end
local g = tonumber(redis.call('HGET', key, 'g') or '0')
if g > 0 then g = redis.call('HINCRBY', key, 'g', -1) end
if g < tonumber(ARGV[2]) then redis.call('HDEL', key, 'gl') end
return 1

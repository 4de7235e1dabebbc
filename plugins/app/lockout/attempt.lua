-- One attempt at a password (a login, a change-password check), counted before the
-- password is verified, so that parallel attempts cannot all get past the lock.
-- KEYS[1]: the username's lockout hash. ARGV: the client (IP, or IPv6 /64); the failures
-- in a row from one client that lock it; the failures from all clients within a window
-- that throttle the username; a client's first and longest lock (ms); the username's
-- first and longest lock (ms); the window, which is also how long the hash is kept after
-- the last attempt (ms); '1' when the client is exempt from the username's lock.
-- Fields: c:<client> failures in a row, l:<client> locked until (ms), g failures from all
-- clients in the window that began at gs, gl the username locked until (ms).
-- Returns {0, failures in a row from this client, this one included} when the attempt may
-- go on; {1, ms} refused, this client is locked; {2, ms} refused, the username is.
local key, client = KEYS[1], ARGV[1]
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local window = tonumber(ARGV[8])

local clientUntil = tonumber(redis.call('HGET', key, 'l:' .. client) or '0')
if clientUntil > now then return {1, clientUntil - now} end
if ARGV[9] ~= '1' then
  local until_ = tonumber(redis.call('HGET', key, 'gl') or '0')
  if until_ > now then return {2, until_ - now} end
end

-- From the threshold on, lock for first × 2^(failures − threshold), at most the longest.
local function lockFor (n, threshold, first, longest)
  return math.floor(math.min(first * 2 ^ (n - threshold), longest))
end

local n = redis.call('HINCRBY', key, 'c:' .. client, 1)
local threshold = tonumber(ARGV[2])
if n >= threshold then
  redis.call('HSET', key, 'l:' .. client, now + lockFor(n, threshold, tonumber(ARGV[4]), tonumber(ARGV[5])))
end

if now - tonumber(redis.call('HGET', key, 'gs') or '0') > window then
  redis.call('HSET', key, 'g', 0, 'gs', now)
end
local g = redis.call('HINCRBY', key, 'g', 1)
local gThreshold = tonumber(ARGV[3])
if g >= gThreshold then
  redis.call('HSET', key, 'gl', now + lockFor(g, gThreshold, tonumber(ARGV[6]), tonumber(ARGV[7])))
end

redis.call('PEXPIRE', key, window)
return {0, n}
